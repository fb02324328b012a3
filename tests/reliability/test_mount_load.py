"""Load: 32 reader threads over 1,000 items for a bounded time, with eviction, a walker and refreshes.

The cache is capped below the data (eviction under pressure), a walker thread lists and stats the
whole tree in a loop, and items are added on the server while ``--refresh 1`` picks them up.
Every byte read is checked; every thread must finish (bounded joins: a deadlock fails the test);
the mount's descriptors and memory after the run stay within bounds of those before it.
Throughput and memory go to the reliability report.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, mounted, needs_fuse
from tests.fixtures.waiting import wait_until
from tests.reliability.conftest import (
    BASE_DATE, Expected, Usage, add_small_items, alive, md5, stats_json, usage,
)

pytestmark = [needs_fuse, pytest.mark.fuse]
ITEMS = 1000
READERS = 32
SECONDS = 12.0
CACHE_MAX = "8M"  # the items hold ~40 MB
JOIN_LIMIT = 60.0


class Load:
    """Shared state of the load threads."""

    def __init__(self, m: Mount, want: Expected, seconds: float) -> None:
        self.m, self.want = m, want
        self.paths = sorted(want.item_of)
        self.stop_at = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.reads = self.bytes = self.walks = self.stats = 0

    def running(self) -> bool:
        return time.monotonic() < self.stop_at and len(self.errors) < 20

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def reader(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            rel = rng.choice(self.paths)
            try:
                data = (self.m.path / "by-voice" / rel).read_bytes()
            except OSError as exc:
                self.fail(f"read {rel}: {exc}")
                continue
            if (md5(data), len(data)) != self.want.files[rel]:
                self.fail(f"wrong bytes: {rel}")
            with self.lock:
                self.reads, self.bytes = self.reads + 1, self.bytes + len(data)

    def walker(self) -> None:
        while self.running():
            n = 0
            for folder, _dirs, files in os.walk(self.m.path / "by-date"):
                for name in files:
                    try:
                        os.stat(os.path.join(folder, name))
                    except FileNotFoundError:
                        pass  # a refresh may rebuild a folder between readdir and stat
                    n += 1
            with self.lock:
                self.walks, self.stats = self.walks + 1, self.stats + n


def _adder(t: FakeTenant, stop: threading.Event, added: list[dict[str, Any]]) -> None:
    """A new newest item every 0.5 s (what --refresh picks up)."""
    date = BASE_DATE + 61 * 86400
    while not stop.wait(0.5):
        date += 60
        added.append(t.library.add_item(date_unix=date, audio_size=30_000))


def _run(load: Load, t: FakeTenant) -> tuple[list[threading.Thread], list[dict[str, Any]]]:
    stop, added = threading.Event(), []
    threads = [threading.Thread(target=load.reader, args=(s,), daemon=True) for s in range(READERS)]
    threads.append(threading.Thread(target=load.walker, daemon=True))
    adder = threading.Thread(target=_adder, args=(t, stop, added), daemon=True)
    for th in [*threads, adder]:
        th.start()
    deadline = time.monotonic() + SECONDS + JOIN_LIMIT
    for th in threads:
        th.join(max(0.1, deadline - time.monotonic()))
    stop.set()
    adder.join(JOIN_LIMIT)
    return [th for th in [*threads, adder] if th.is_alive()], added


def test_32_readers_with_eviction_walks_and_refreshes(fake_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                                      report: dict[str, Any]) -> None:
    t = fake_tenant(items=0, seed=81)
    add_small_items(t, ITEMS, seed=81)
    want = Expected.of(t, sidecars=False)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--cache-max-size", CACHE_MAX,
                 "--refresh", "1") as m:
        before = usage(m.proc.pid)
        load = Load(m, want, SECONDS)
        started = time.monotonic()
        stuck, added = _run(load, t)
        elapsed = time.monotonic() - started
        assert stuck == [], f"{len(stuck)} threads never finished (deadlock?)"
        newest = Expected.of(t, sidecars=False)
        last = next(rel for rel, item in newest.item_of.items() if item == added[-1]["history_item_id"])
        wait_until(lambda: (m.path / "by-voice" / last).exists(), 15, "the refresh to show a new item")
        stats = stats_json(m)
        after = usage(m.proc.pid)
        assert alive(m)
    report.update(items=ITEMS, readers=READERS, seconds=round(elapsed, 1), reads=load.reads,
                  mb_read=round(load.bytes / 1e6, 1), mb_per_s=round(load.bytes / 1e6 / elapsed, 1),
                  walks=load.walks, stats_by_walker=load.stats, items_added_during=len(added),
                  evictions=stats["cache"]["evictions"], cache_bytes=stats["cache_bytes"],
                  mount_before=before.as_dict(), mount_after=after.as_dict(), errors=load.errors[:5])
    assert load.errors == []
    assert load.reads > READERS and load.walks >= 1
    assert stats["cache"]["evictions"] > 0  # the cap really forced eviction
    assert stats["cache_bytes"] <= 8 * 2**20 + 2 * 60_000  # capped (plus blobs pinned by open files)
    _bounded(before, after)


def _bounded(before: Usage, after: Usage) -> None:
    assert after.fds <= before.fds + 64, (before, after)  # pool (32) + readers' open files, not one per read
    assert after.rss_kb <= before.rss_kb + 160 * 1024, (before, after)
