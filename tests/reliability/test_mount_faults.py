"""Copies from a COLD mount while the fake API misbehaves: exact bytes or a clean EIO, never a hang.

Each fault alone, then all together: latency with jitter, 429 with Retry-After, 500/503 on 10%
of requests, bodies cut short on 5%, and a total outage of ~3 s in the middle of a copy. After
each run every file present in the copy is exact; a run that hit EIO is re-run until complete.
The mount process stays up, and its memory and descriptors stay bounded.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, mounted, needs_fuse
from tests.reliability.conftest import (
    HANG_LIMIT, Expected, RsyncRun, Usage, alive, fault_counts, items_of, md5, rsync, stats_json, usage,
)

pytestmark = [needs_fuse, pytest.mark.fuse]

ITEMS = 150
#: One fault at a time, then all together (rates as the issue asks).
FAULTS = {
    "latency": Faults(latency_ms=40, jitter=0.5),
    "rate_limit": Faults(rate_limit=40),
    "5xx": Faults(fail_rate=0.10),
    "truncate": Faults(truncate_rate=0.05),
    "all": Faults(latency_ms=20, jitter=0.5, rate_limit=60, fail_rate=0.10, truncate_rate=0.05),
}
#: Growth allowed over a copy: the connection pool (32) and a few threads' worth, not one per file.
FD_SLACK = 48
RSS_SLACK_KB = 96 * 1024


def _copy_until_complete(m: Mount, dst: Path, want: Expected, runs: int = 3) -> list[RsyncRun]:
    """rsync until it exits 0; after every run each file present must be exact."""
    done: list[RsyncRun] = []
    for _ in range(runs):
        done.append(rsync(m.path / "by-voice", dst))
        wrong, _missing, _ = want.check(dst)
        assert wrong == [], f"short or wrong files after run {len(done)}: {wrong[:5]}"
        assert alive(m), f"the mount died: {m.log.read_text()[-2000:]}"
        if done[-1].returncode == 0:
            break
        assert done[-1].read_errors > 0, f"rsync failed without a read error: {done[-1].stderr}"
    return done


def _bounded(before: Usage, after: Usage) -> None:
    assert after.fds <= before.fds + FD_SLACK, (before, after)
    assert after.rss_kb <= before.rss_kb + RSS_SLACK_KB, (before, after)


def _figures(runs: list[RsyncRun], want: Expected, verified: int, faults: dict[str, int], before: Usage,
             after: Usage, m: Mount) -> dict[str, Any]:
    return {"items": len(want.item_of), "files_verified": len(want.files), "bytes_verified": verified,
            "rsync_runs": len(runs), "read_errors_surfaced": sum(r.read_errors for r in runs),
            "faults_injected": faults, "mount_before": before.as_dict(), "mount_after": after.as_dict(),
            "downloads_failed": stats_json(m)["downloads_failed"]}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_rsync_of_a_cold_mount_under_faults(kind: str, fake_faults: FakeApiServer, small_tenant: Callable[..., FakeTenant],
                                            tmp_path: Path, report: dict[str, Any]) -> None:
    t = small_tenant(ITEMS, seed=100 + list(FAULTS).index(kind))
    want, dst = Expected.of(t), tmp_path / "copy"
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--api-deadline", "30") as m:
        before, stats0 = usage(m.proc.pid), fake_faults.stats()
        fake_faults.set_faults(FAULTS[kind])
        try:
            runs = _copy_until_complete(m, dst, want)
        finally:
            fake_faults.set_faults(Faults())
        injected = fault_counts(stats0, fake_faults.stats())
        after = usage(m.proc.pid)
        wrong, missing, verified = want.check(dst)
        report.update(_figures(runs, want, verified, injected, before, after, m))
        _bounded(before, after)
    assert (wrong, missing) == ([], [])
    assert runs[-1].returncode == 0, runs[-1].stderr
    if kind != "all":  # one fault alone never exhausts the retries: the first copy is complete
        assert len(runs) == 1, [r.stderr for r in runs]
    key = {"latency": None, "rate_limit": "429", "5xx": "500", "truncate": "truncated", "all": "truncated"}[kind]
    assert key is None or injected[key] > 0, injected  # the fault really happened


def _outage_after(srv: FakeApiServer, t: FakeTenant, files: int, length: float, out: dict[str, float]) -> None:
    """Turn the outage on once ``files`` audio bodies were served, off ``length`` s later; time the recovery."""
    def served() -> int:
        return int(t.library.stats.snapshot()["requests"].get("audio", {}).get("200", 0))

    deadline = time.monotonic() + HANG_LIMIT
    while served() < files and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.set_faults(Faults(outage=True))
    out["outage_started_after_files"] = served()
    time.sleep(length)
    at_end = served()
    srv.set_faults(Faults(latency_ms=5))
    off = time.monotonic()
    while served() == at_end and time.monotonic() < deadline:
        time.sleep(0.005)
    out["recovery_s"] = round(time.monotonic() - off, 3)


@pytest.mark.parametrize("deadline", ["30", "1"], ids=["retries-ride-it-out", "retries-run-out"])
def test_an_outage_in_the_middle_of_a_copy(deadline: str, fake_faults: FakeApiServer, small_tenant: Callable[..., FakeTenant],
                                           tmp_path: Path, report: dict[str, Any]) -> None:
    """3 s without an API: with a 30 s deadline the copy just waits; with 1 s some reads get EIO, a re-run completes."""
    t = small_tenant(ITEMS, seed=120)
    want, dst = Expected.of(t), tmp_path / "copy"
    (tmp_path / "mnt").mkdir()
    timing: dict[str, float] = {}
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--api-deadline", deadline) as m:
        before, stats0 = usage(m.proc.pid), fake_faults.stats()
        fake_faults.set_faults(Faults(latency_ms=5))  # so the copy is still running when the outage starts
        switch = threading.Thread(target=_outage_after, args=(fake_faults, t, 40, 3.0, timing), daemon=True)
        switch.start()
        try:
            runs = _copy_until_complete(m, dst, want)
        finally:
            switch.join(HANG_LIMIT)
            fake_faults.set_faults(Faults())
        assert not switch.is_alive()
        after = usage(m.proc.pid)
        wrong, missing, verified = want.check(dst)
        report.update(_figures(runs, want, verified, fault_counts(stats0, fake_faults.stats()), before, after, m),
                      **timing)
        _bounded(before, after)
    assert (wrong, missing) == ([], [])
    assert timing["outage_started_after_files"] < ITEMS  # the outage did hit the middle of the copy
    assert report["faults_injected"]["resets"] > 0
    if deadline == "1":  # retries ran out: readers saw EIO, rsync said so, the next run completed
        assert runs[0].returncode != 0 and runs[0].read_errors > 0 and len(runs) > 1
    else:
        assert len(runs) == 1


def _timed_read(path: Path, out: dict[str, Any]) -> None:
    started = time.monotonic()
    try:
        out["data"] = path.read_bytes()
    except OSError as exc:
        out["errno"] = exc.errno
    out["seconds"] = time.monotonic() - started


def test_when_retries_run_out_the_reader_gets_eio_then_recovers(fake_faults: FakeApiServer,
                                                                small_tenant: Callable[..., FakeTenant],
                                                                tmp_path: Path, report: dict[str, Any]) -> None:
    t = small_tenant(10, seed=130)
    want = Expected.of(t, sidecars=False)
    rel = sorted(want.item_of)[0]
    (tmp_path / "mnt").mkdir()
    deadline = 2.0
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--api-deadline", str(deadline)) as m:
        path = m.path / "by-voice" / rel
        fake_faults.set_faults(Faults(outage=True))
        try:
            out: dict[str, Any] = {}
            reader = threading.Thread(target=_timed_read, args=(path, out), daemon=True)
            reader.start()
            reader.join(deadline + 30)  # a hang detector: the deadline bounds the wait
            assert not reader.is_alive(), "a read hung past the API deadline"
        finally:
            fake_faults.set_faults(Faults())
        assert out.get("errno") == errno.EIO, out.get("errno")
        assert alive(m)
        data = path.read_bytes()  # the API is back: the next open starts a new download
        report.update(api_deadline_s=deadline, eio_after_s=round(out["seconds"], 2))
    assert (md5(data), len(data)) == want.files[rel]




def test_cached_audio_stays_readable_during_an_outage(fake_faults: FakeApiServer, small_tenant: Callable[..., FakeTenant],
                                                      tmp_path: Path) -> None:
    t = small_tenant(12, seed=131)
    want = Expected.of(t)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--api-deadline", "2",
                 "--refresh", "1") as m:
        assert rsync(m.path / "by-voice", tmp_path / "warm").returncode == 0
        fake_faults.set_faults(Faults(outage=True))
        try:
            time.sleep(1.5)  # let a refresh fail: the tree must not empty
            run = rsync(m.path / "by-voice", tmp_path / "during")
            assert stats_json(m)["items"] == len(items_of(t))
        finally:
            fake_faults.set_faults(Faults())
        assert alive(m)
    assert run.returncode == 0, run.stderr
    assert want.check(tmp_path / "during")[:2] == ([], [])


def test_subprocess_copies_do_not_hang_when_the_mount_is_slow(fake_faults: FakeApiServer,
                                                              small_tenant: Callable[..., FakeTenant],
                                                              tmp_path: Path) -> None:
    """cp -r and a parallel find/stat walk under latency and 5xx: both finish, bytes exact."""
    t = small_tenant(60, seed=132)
    want = Expected.of(t, view="by-date")
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        fake_faults.set_faults(Faults(latency_ms=30, fail_rate=0.1))
        try:
            walker = subprocess.Popen(["find", str(m.path), "-type", "f", "-size", "+0"], stdout=subprocess.DEVNULL)
            cp = subprocess.run(["cp", "-r", str(m.path / "by-date"), str(tmp_path / "copy")], capture_output=True,
                                text=True, timeout=HANG_LIMIT)
            assert walker.wait(HANG_LIMIT) == 0
        finally:
            fake_faults.set_faults(Faults())
    assert cp.returncode == 0, cp.stderr
    assert want.check(tmp_path / "copy")[:2] == ([], [])
    assert os.path.isdir(tmp_path / "copy")
