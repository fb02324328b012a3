"""kill -9 of the mount at seeded random moments, during downloads and during deletes.

After each crash (auto_unmount removes the dead mount): every complete blob in the cache is its
item's exact bytes, and a remount serves exact bytes (never a ``.part``, which the next start
removes). Deletes: each item the user rm'ed is gone after the remount; every item the server lost
got exactly one DELETE, even when the crash fell between the DELETE and its journal update.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import mounted, needs_fuse
from tests.fixtures.waiting import wait_until
from tests.reliability.conftest import (
    HANG_LIMIT, Expected, check_cache, items_of, kill_mount, rsync, stats_json,
)

pytestmark = [needs_fuse, pytest.mark.fuse]
SEED = 4242
CRASHES = 4


def _copy_then_kill(mnt: Path, t: FakeTenant, cache: Path, dst: Path, delay: float) -> int:
    """Start a cold cp -r, kill the mount after ``delay`` s; returns how many blobs were complete then."""
    with mounted(mnt, t.base_url, t.api_key, cache) as m:
        cp = subprocess.Popen(["cp", "-r", str(m.path / "by-date"), str(dst)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        try:
            time.sleep(delay)
            kill_mount(m)
        finally:
            cp.wait(HANG_LIMIT)
    return check_cache(cache, t)[0]


def test_kill_during_downloads_keeps_only_exact_blobs(fake_faults: FakeApiServer, fake_tenant: Callable[..., FakeTenant],
                                                      tmp_path: Path, report: dict[str, Any]) -> None:
    rng = random.Random(SEED)
    t = fake_tenant(items=40, seed=61)  # real sizes: 30 KB - 5 MB, so kills land mid-body
    (tmp_path / "mnt").mkdir()
    cache, parts_seen, blobs_seen = tmp_path / "cache", 0, []
    fake_faults.set_faults(Faults(bandwidth=500_000))  # 0.5 MB/s per body: kills land mid-body
    try:
        for i in range(CRASHES):
            _copy_then_kill(tmp_path / "mnt", t, cache, tmp_path / f"cp{i}", rng.uniform(0.2, 0.8))
            blobs, parts, problems = check_cache(cache, t)
            assert problems == [], problems
            blobs_seen.append(blobs)
            parts_seen += parts
    finally:
        fake_faults.set_faults(Faults())
    want = Expected.of(t, view="by-date")
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, cache) as m:
        run = rsync(m.path / "by-date", tmp_path / "final")
        wait_until(lambda: check_cache(cache, t)[1] == 0, 30, "stale .part files to be removed")
    assert run.returncode == 0, run.stderr
    assert want.check(tmp_path / "final")[:2] == ([], [])
    assert check_cache(cache, t)[2] == []
    report.update(crashes=CRASHES, complete_blobs_after_each_crash=blobs_seen, part_files_left_by_crashes=parts_seen,
                  items_verified_after_remount=len(want.item_of))
    assert parts_seen > 0  # the kills did land mid-download


def _journal(cache: Path) -> dict[str, str]:
    db = sqlite3.connect(cache / "index.sqlite3")
    try:
        return {str(i): str(s) for i, s in db.execute("SELECT id, state FROM journal")}
    finally:
        db.close()


def _rm_then_kill(m: Any, paths: list[Path], delay: float) -> set[str]:
    """rm -v the files, kill the mount after ``delay`` s; the names rm reported removed."""
    rm = subprocess.Popen(["rm", "-v", *map(str, paths)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(delay)
    kill_mount(m)
    out, _ = rm.communicate(timeout=HANG_LIMIT)
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("removed '")}


def _deletes_by_id(t: FakeTenant) -> Counter[str]:
    return Counter(e["path"].split("?")[0].rsplit("/", 1)[1] for e in t.library.stats.entries() if e["method"] == "DELETE")


def test_kill_during_deletes_loses_none_and_sends_none_twice(fake_faults: FakeApiServer, small_tenant: Callable[..., FakeTenant],
                                                             tmp_path: Path, report: dict[str, Any]) -> None:
    rng = random.Random(SEED + 1)
    t = small_tenant(60, seed=62)
    want = Expected.of(t, view="by-voice", sidecars=False)
    path_of = {item: rel for rel, item in want.item_of.items()}
    todo = sorted(path_of)
    rng.shuffle(todo)
    (tmp_path / "mnt").mkdir()
    cache, removed, pending_after_crash = tmp_path / "cache", set(), 0
    for i in range(CRASHES):
        batch = todo[i * 8 : (i + 1) * 8]
        with mounted(tmp_path / "mnt", t.base_url, t.api_key, cache, "--allow-delete") as m:
            wait_until(lambda: stats_json(m)["pending_deletes"] == 0, 30, "the journal replay")  # noqa: B023
            fake_faults.set_faults(Faults(latency_ms=80, jitter=0.5))  # each DELETE takes a while
            try:
                names = _rm_then_kill(m, [m.path / "by-voice" / path_of[b] for b in batch], rng.uniform(0.05, 0.6))
            finally:
                fake_faults.set_faults(Faults())
            removed |= {b for b in batch if str(m.path / "by-voice" / path_of[b]) in names}
        pending_after_crash += sum(1 for s in _journal(cache).values() if s == "pending")
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, cache, "--allow-delete") as m:
        wait_until(lambda: stats_json(m)["pending_deletes"] == 0, 30, "the journal replay")
        visible = {item for item, rel in path_of.items() if (m.path / "by-voice" / rel).exists()}
    remote = {i.history_item_id for i in items_of(t)}
    gone = set(path_of) - remote
    deletes = _deletes_by_id(t)
    report.update(crashes=CRASHES, rm_reported=len(removed), deleted_on_server=len(gone),
                  pending_in_journal_after_crashes=pending_after_crash, delete_requests=sum(deletes.values()))
    assert removed <= gone, "an item the user rm'ed is still on the server"
    assert visible == remote, "the remounted tree differs from the server"
    assert {i for i, n in deletes.items() if n > 1} == set(), "a DELETE was sent twice"
    assert set(deletes) == gone  # exactly one DELETE per deleted item, none for the others
    assert set(_journal(cache).values()) <= {"done"}
