"""What a user sees of a running mount: the success line, its log, `historyfs status`, `df`, `mount`, `rm`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import _is_mounted, mount_cmd, mounted, needs_fuse, unmount
from tests.fixtures.waiting import wait_until

pytestmark = [needs_fuse, pytest.mark.fuse]


def _hist(*args: str, key: str | None = None, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    if key is not None:
        env["ELEVENLABS_API_KEY"] = key
    hfs = str(Path(sys.executable).parent / "historyfs")  # not `python -m`: that would import ./historyfs of cwd
    return subprocess.run([hfs, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def background(t: FakeTenant, mnt: Path, cache: Path, *extra: str, cwd: Path | None = None) -> Iterator[subprocess.CompletedProcess[str]]:
    """`historyfs mount` without --foreground (the daemon); always unmounted afterwards."""
    mnt.mkdir(exist_ok=True)
    cmd = [c for c in mount_cmd(mnt, t.base_url, cache, *extra) if c != "--foreground"]
    try:
        done = _hist(*cmd[3:], key=t.api_key, cwd=cwd)
        assert done.returncode == 0, done.stderr
        yield done
    finally:
        unmount(mnt)


def _stats(mnt: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((mnt / ".historyfs" / "stats.json").read_bytes())  # type: ignore[no-any-return]


@pytest.fixture
def tenant(fake_tenant: Callable[..., FakeTenant]) -> FakeTenant:
    return fake_tenant(items=7, seed=43)


def test_a_background_mount_says_where_and_how_many_and_logs_privately(tenant: FakeTenant, tmp_path: Path) -> None:
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    with background(tenant, mnt, cache, "--debug") as done:
        log_file = cache / "historyfs.log"
        assert done.stdout == f"historyfs: mounted 7 items at {mnt} (log: {log_file})\n"
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
        assert "mounted 7 items" in log_file.read_text()
        stats = _stats(mnt)
        assert (stats["api_url"], stats["log_file"], stats["recent_errors"]) == (tenant.base_url, str(log_file), [])
        assert stats["cache_max_size"] == stats["cache"]["max_size"] == 10 << 30
        next(mnt.glob("by-date/*/*/*/*.mp3")).read_bytes()  # a download, logged at debug
    text = log_file.read_text()
    assert "HTTP Request: GET" in text  # --debug logs every request (URLs; never the key header)
    assert tenant.api_key not in text and tenant.api_key not in json.dumps(stats)


def test_log_file_moves_the_log_and_stats_json_names_it(tenant: FakeTenant, tmp_path: Path) -> None:
    with background(tenant, tmp_path / "mnt", tmp_path / "cache", "--log-file", str(tmp_path / "my.log")) as done:
        assert done.stdout.endswith(f"(log: {tmp_path / 'my.log'})\n")
        assert _stats(tmp_path / "mnt")["log_file"] == str(tmp_path / "my.log")
    assert "mounted 7 items" in (tmp_path / "my.log").read_text()
    assert not (tmp_path / "cache" / "historyfs.log").exists()


def test_a_foreground_mount_logs_its_success_line(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache") as m:
        log = tmp_path / "cache" / "historyfs.log"  # written once the mount has seen itself live, a moment after
        wait_until(lambda: "mounted 7 items at" in log.read_text(), 10, "the success line in the log")
    assert f"historyfs: mounted 7 items at {m.path}" in m.log.read_text()  # and on its stderr


@pytest.mark.parametrize("how", ["foreground", "daemon", "remount"])
def test_an_unreachable_api_is_reported_at_once_while_retrying(tenant: FakeTenant, tmp_path: Path, how: str) -> None:
    (tmp_path / "mnt").mkdir()
    if how == "remount":  # the cache holds an index: the parent checks the API before it forks
        with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache"):
            pass
    cmd = mount_cmd(tmp_path / "mnt", "http://127.0.0.1:9", tmp_path / "cache", "--api-deadline", "4")
    cmd = cmd if how == "foreground" else [c for c in cmd if c != "--foreground"]
    env = {**os.environ, "ELEVENLABS_API_KEY": "k"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        still_retrying = proc.poll() is None  # said while the mount still tries
        rest = proc.stderr.read()
        proc.wait(60)
    finally:
        proc.kill()
    assert first.startswith("historyfs mount: cannot reach the API at http://127.0.0.1:9 yet") and "retrying" in first
    assert still_retrying and proc.returncode == 1
    assert rest.strip().splitlines() == [rest.strip()] and rest.startswith("historyfs mount: error: cannot reach the API")
    assert not _is_mounted(tmp_path / "mnt")


def _kill_leaving_a_dead_mount(mnt: Path) -> None:
    """SIGKILL the daemon and its auto_unmount watcher: what a crash under an old version leaves."""
    target = os.path.realpath(mnt)
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for wanted in (b"fusermount", b"historyfs"):  # the watcher first: once the daemon is gone it would unmount
        for pid in pids:
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                is_watcher = b"fusermount" in argv[0]
                if target.encode() in argv and (is_watcher if wanted == b"fusermount" else b"historyfs" in b" ".join(argv)):
                    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.listdir(mnt)
        except OSError as exc:
            if exc.strerror == "Transport endpoint is not connected":
                return
        time.sleep(0.05)
    raise AssertionError("the mount did not die")


def test_status_shows_every_mount_and_a_dead_one_without_a_traceback(tenant: FakeTenant, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with background(tenant, a, tmp_path / "ca"), background(tenant, b, tmp_path / "cb", "--cache-max-size", "64M"):
        done = _hist("status")  # other mounts of this user may be listed too (and may not answer): ours are checked
        assert "Traceback" not in done.stderr and _hist("status", str(a)).returncode == 0
        for mnt, cache, limit in ((a, "ca", "10.0 GiB"), (b, "cb", "64.0 MiB")):
            block = done.stdout.split(f"{mnt}\n", 1)[1].split("\n\n", 1)[0]
            assert f"API             {tenant.base_url}" in block and "items           7" in block
            assert f"cache           0 B of {limit}" in block and "downloads       0 in flight" in block
            assert "pending deletes 0" in block and "recent errors   none" in block
            assert f"log             {tmp_path / cache / 'historyfs.log'}" in block and "last refresh    20" in block
        only_b = json.loads(_hist("status", str(b), "--json").stdout)["mounts"]
        assert [(m["mountpoint"], m["items"], m["cache_max_size"], m["answering"]) for m in only_b] == [(str(b), 7, 64 << 20, True)]
        _kill_leaving_a_dead_mount(b)
        dead = _hist("status")
        assert _hist("status", str(b)).returncode == 1 and "Traceback" not in dead.stderr + dead.stdout
        assert f"{b}\n  not answering: Transport endpoint is not connected" in dead.stdout and f"{a}\n  API" in dead.stdout
        as_json = {m["mountpoint"]: m for m in json.loads(_hist("status", "--json").stdout)["mounts"]}
        assert as_json[str(b)]["answering"] is False and as_json[str(a)]["answering"] is True
    wrong = _hist("status", str(tmp_path))
    assert wrong.returncode == 1 and wrong.stderr.startswith("historyfs status: error: not a historyfs mount")


def test_recent_errors_reach_stats_json_and_status(tenant: FakeTenant, fake_faults: FakeApiServer, tmp_path: Path) -> None:
    with background(tenant, tmp_path / "mnt", tmp_path / "cache", "--api-deadline", "1", "--refresh", "1"):
        assert _stats(tmp_path / "mnt")["recent_errors"] == []
        fake_faults.set_faults(Faults(outage=True))  # the next refresh fails: a WARNING
        wait_until(lambda: bool(_stats(tmp_path / "mnt")["recent_errors"]), 30, "a failed refresh to be logged")
        fake_faults.set_faults(Faults())
        errors = _stats(tmp_path / "mnt")["recent_errors"]
        assert errors[-1]["level"] == "WARNING" and "refresh failed" in errors[-1]["message"]
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", errors[-1]["time"])
        shown = _hist("status").stdout
        assert f"recent errors   {len(errors)}" in shown and errors[-1]["message"] in shown


def test_df_shows_the_cache_limit_and_the_room_left(tenant: FakeTenant, tmp_path: Path) -> None:
    with background(tenant, tmp_path / "mnt", tmp_path / "cache", "--cache-max-size", "64M"):
        before = os.statvfs(tmp_path / "mnt")
        assert before.f_blocks * before.f_frsize == 64 << 20 and before.f_bavail == before.f_blocks
        size = len(next((tmp_path / "mnt").glob("by-voice/*/*/*/*.mp3")).read_bytes())
        wait_until(lambda: _stats(tmp_path / "mnt")["cache_bytes"] == size, 30, "the download to be committed to the cache")
        after = os.statvfs(tmp_path / "mnt")
        assert (before.f_bfree - after.f_bfree) * after.f_frsize in range(size - 4096, size + 4096)
        df = subprocess.run(["df", "-B1", str(tmp_path / "mnt")], capture_output=True, text=True).stdout
        assert df.splitlines()[1].split()[:2] == ["historyfs", str(64 << 20)]


def test_the_source_is_historyfs_wherever_the_mount_was_started(tenant: FakeTenant, tmp_path: Path) -> None:
    start = tmp_path / "clone"
    (start / "historyfs").mkdir(parents=True)  # a clone of this repository has such a folder
    with background(tenant, tmp_path / "mnt", tmp_path / "cache", cwd=start):
        target = str(tmp_path / "mnt")
        line = next(ln.split() for ln in Path("/proc/self/mounts").read_text().splitlines() if ln.split()[1] == target)
        assert line[:3] == ["historyfs", target, "fuse.historyfs"]
        listed = subprocess.run(["mount"], capture_output=True, text=True, cwd="/").stdout
        assert f"historyfs on {target} type fuse.historyfs" in listed
        daemons = [p for p in os.listdir("/proc") if p.isdigit() and _argv_has(p, target)]
        assert daemons and all(os.readlink(f"/proc/{p}/cwd") == "/" for p in daemons)  # holds no folder busy



def _argv_has(pid: str, word: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return word.encode() in argv and any(b"historyfs" in a for a in argv[:3])


def test_rm_on_a_default_mount_says_what_the_readme_says(tenant: FakeTenant, tmp_path: Path) -> None:
    with background(tenant, tmp_path / "mnt", tmp_path / "cache"):
        clip = next((tmp_path / "mnt").glob("by-voice/*/*/*/*.mp3"))
        done = subprocess.run(["rm", str(clip)], capture_output=True, text=True)
    assert done.returncode == 1 and "Read-only file system" in done.stderr
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "**`rm` says \"Read-only file system\".**" in readme  # the troubleshooting entry is keyed on it


def test_every_stats_field_is_documented_and_no_two_read_alike(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache") as m:
        next(m.path.glob("by-date/*/*/*/*.mp3")).read_bytes()
        stats = _stats(m.path)
    semantics = (Path(__file__).parents[2] / "SEMANTICS.md").read_text()
    for name in [*stats, *(f"{k}" for k in stats["cache"])]:
        assert f"`{name}`" in semantics, f"stats.json field {name} is not described in SEMANTICS.md"
    assert not {"hits", "misses"} & set(stats["cache"])  # the cache's lookups are lookup_hits / lookup_misses
    assert stats["cache_misses"] == 1 and stats["cache"]["lookup_misses"] >= 1
