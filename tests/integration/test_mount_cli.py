"""`historyfs mount/unmount/demo` and `mount.historyfs`: one-line failures, daemon readiness, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import _is_mounted, mount_cmd, mounted, needs_fuse, unmount

pytestmark = [needs_fuse, pytest.mark.fuse]


def _run(cmd: list[str], key: str | None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    if key is not None:
        env["ELEVENLABS_API_KEY"] = key
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_failure(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def tenant(fake_tenant: Callable[..., FakeTenant]) -> FakeTenant:
    return fake_tenant(items=6, seed=41)


def _hist(*args: str) -> list[str]:
    return [sys.executable, "-m", "historyfs", *args]


def test_bad_key_fails_before_mounting(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    done = _run(mount_cmd(tmp_path / "mnt", tenant.base_url, tmp_path / "cache"), "wrong-key")
    _one_line_failure(done, "key")
    assert "wrong-key" not in done.stderr and not _is_mounted(tmp_path / "mnt")


def test_bad_key_fails_before_mounting_in_daemon_mode_and_on_a_remount(tenant: FakeTenant, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    daemon = [c for c in mount_cmd(mnt, tenant.base_url, tmp_path / "cache") if c != "--foreground"]
    _one_line_failure(_run(daemon, "wrong-key"), "refused the key")  # first mount: the listing says it
    assert not _is_mounted(mnt)
    with mounted(mnt, tenant.base_url, tenant.api_key, tmp_path / "cache"):
        pass  # now the cache holds an index: a remount shows it at once, so the key is checked first
    _one_line_failure(_run(mount_cmd(mnt, tenant.base_url, tmp_path / "cache"), "wrong-key"), "refused the key")
    assert not _is_mounted(mnt)


def test_a_first_mount_lists_once_and_a_remount_checks_the_key(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    tenant.server.reset_stats()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache", "--refresh", "0"):
        assert [e["endpoint"] for e in tenant.server.request_log] == ["list"]  # the listing is the check
    tenant.server.reset_stats()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache", "--refresh", "0",
                 "--full-resync", "0"):
        assert [e["endpoint"] for e in tenant.server.request_log][:1] == ["list"]  # check_auth before mounting


def test_missing_key_fails(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    _one_line_failure(_run(mount_cmd(tmp_path / "mnt", tenant.base_url, tmp_path / "cache"), None), "ELEVENLABS_API_KEY")


@pytest.mark.parametrize("case", ["missing", "file", "nonempty"])
def test_bad_mountpoints_fail(tenant: FakeTenant, tmp_path: Path, case: str) -> None:
    mnt = tmp_path / "mnt"
    if case == "file":
        mnt.write_text("x")
    elif case == "nonempty":
        mnt.mkdir()
        (mnt / "something").write_text("x")
    done = _run(mount_cmd(mnt, tenant.base_url, tmp_path / "cache"), tenant.api_key)
    _one_line_failure(done, {"missing": "does not exist", "file": "not a folder", "nonempty": "not empty"}[case])
    assert not _is_mounted(mnt)


def test_already_mounted_and_cache_in_use_fail(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt2").mkdir()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache") as m:
        _one_line_failure(_run(mount_cmd(m.path, tenant.base_url, tmp_path / "c2"), tenant.api_key), "already mounted")
        daemon = _run(mount_cmd(tmp_path / "mnt2", tenant.base_url, tmp_path / "cache"), tenant.api_key)
        _one_line_failure(daemon, "cache")  # same cache folder, foreground: one line from the cache lock
        assert not _is_mounted(tmp_path / "mnt2")


def test_daemon_mode_returns_once_live_and_unmount_works(tenant: FakeTenant, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = [c for c in mount_cmd(mnt, tenant.base_url, tmp_path / "cache") if c != "--foreground"]
    try:
        done = _run(cmd, tenant.api_key)
        assert done.returncode == 0, done.stderr
        assert _is_mounted(mnt) and os.listdir(mnt / "by-date")  # live as soon as the command returned
        assert _run(_hist("unmount", str(mnt)), None).returncode == 0
        assert not _is_mounted(mnt)
    finally:
        unmount(mnt)


def test_daemon_mode_reports_the_childs_error(tenant: FakeTenant, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt2").mkdir()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache"):
        cmd = [c for c in mount_cmd(tmp_path / "mnt2", tenant.base_url, tmp_path / "cache") if c != "--foreground"]
        _one_line_failure(_run(cmd, tenant.api_key), "cache")
        assert not _is_mounted(tmp_path / "mnt2")


def test_unmount_of_something_else_fails(tmp_path: Path) -> None:
    _one_line_failure(_run(_hist("unmount", str(tmp_path)), None), "not mounted")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_cleanly(tenant: FakeTenant, tmp_path: Path, sig: int) -> None:
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache") as m:
        m.proc.send_signal(sig)
        assert m.proc.wait(20) == 0
        assert not _is_mounted(m.path)


def test_mount_helper_convention(tenant: FakeTenant, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"api_url={tenant.base_url},cache_dir={tmp_path / 'cache'},tz=UTC,allow_delete,_netdev,nofail,x-systemd.automount"
    helper = [sys.executable, "-c", "import sys; from historyfs.mount_helper import main; sys.exit(main())"]
    try:
        done = _run([*helper, "historyfs", str(mnt), "-o", opts], tenant.api_key)
        assert done.returncode == 0, done.stderr
        assert os.listdir(mnt / "by-voice")
        assert "fuse.historyfs" in Path("/proc/self/mounts").read_text()
    finally:
        unmount(mnt)
    _one_line_failure(_run([*helper, "only-one-arg"], None))


def test_demo_no_wait(tmp_path: Path) -> None:
    done = _run(_hist("demo", str(tmp_path / "demo"), "--items", "20", "--no-wait"), None)
    assert done.returncode == 0, done.stderr
    assert "ls " in done.stdout and "historyfs export" in done.stdout
    assert not _is_mounted(tmp_path / "demo")


def test_demo_waits_until_interrupted(tmp_path: Path) -> None:
    mnt = tmp_path / "demo"
    proc = subprocess.Popen(_hist("demo", str(mnt), "--items", "10"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (_is_mounted(mnt) and (mnt / "by-date").exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(mnt / "by-date")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert not _is_mounted(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        unmount(mnt)
