"""Tools of the reliability suite: small-audio tenants, mount probes, copy checks, kills, the report.

- ``small_tenant(n, seed)``: a tenant whose ``n`` items have small audio (20-60 KB), added through
  the fake's public ``add_item`` with seeded dates over 60 days, so copies under faults stay fast.
- ``Expected``: what a tree copied from the mount must hold (relative path -> exact bytes).
- ``usage(pid)``: the mount process's resident memory and open descriptors (/proc).
- ``kill_mount(m)``: SIGKILL the mount process alone, then wait for ``auto_unmount`` to remove it.
- ``rsync(src, dst)``: one bounded `rsync -a` run, with the files it reported read errors for.
- ``report``: figures for the lead, kept as each test's properties (JUnit XML) and summarised after
  the run; no file is written (a suite leaves nothing behind in /tmp).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from historyfs.cache import key_hash
from historyfs.layout import Layout, extension_for
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, _is_mounted

REPORT: dict[str, Any] = {}
UTC = ZoneInfo("UTC")
#: Seeded items' dates end here (as the fake's generator's do), so no date is "today".
BASE_DATE = 1_790_000_000
#: Upper bound for one command of the suite: a hang detector, not a speed check.
HANG_LIMIT = 120.0


# -- tenants and expectations ------------------------------------------------------------------
def add_small_items(t: FakeTenant, n: int, seed: int, **overrides: Any) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [t.library.add_item(date_unix=BASE_DATE + rng.randrange(60 * 86400), audio_size=rng.randrange(20_000, 60_000),
                               **overrides) for _ in range(n)]


@pytest.fixture
def small_tenant(fake_tenant: Callable[..., FakeTenant]) -> Callable[..., FakeTenant]:
    def make(n: int, seed: int) -> FakeTenant:
        t = fake_tenant(items=0, seed=seed)
        add_small_items(t, n, seed)
        return t

    return make


def items_of(t: FakeTenant) -> list[HistoryItem]:
    return [HistoryItem.from_json(d) for d in t.library.items()]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Expected:
    """Every file of a view (path relative to the view -> md5 and length), with the item ids."""

    files: dict[str, tuple[str, int]]
    item_of: dict[str, str]

    @classmethod
    def of(cls, t: FakeTenant, view: str = "by-voice", sidecars: bool = True) -> Expected:
        items = items_of(t)
        places = Layout(UTC).place_all(items)
        files: dict[str, tuple[str, int]] = {}
        item_of: dict[str, str] = {}
        for item in items:
            p = places[item.history_item_id]
            audio = t.library.audio_bytes(item.history_item_id)
            rel = p.relpath(view).split("/", 1)[1]
            files[rel], item_of[rel] = (md5(audio), len(audio)), item.history_item_id
            if sidecars:
                side = item.to_json_bytes()
                files[p.relpath(view, "sidecar").split("/", 1)[1]] = (md5(side), len(side))
        return cls(files, item_of)

    def check(self, root: Path) -> tuple[list[str], list[str], int]:
        """(wrong or unexpected files, missing files, bytes verified) of a copy under ``root``."""
        wrong, seen, verified = [], set(), 0
        for path in (p for p in root.rglob("*") if p.is_file()):
            rel = str(path.relative_to(root))
            data = path.read_bytes()
            if self.files.get(rel) != (md5(data), len(data)):
                wrong.append(rel)
                continue
            seen.add(rel)
            verified += len(data)
        return wrong, sorted(set(self.files) - seen), verified


def blob_owners(t: FakeTenant) -> dict[str, tuple[str, str]]:
    """Cache file name (hash of the key) -> (item id, key), for every item's native audio."""
    out = {}
    for d in t.library.items():
        key = d["history_item_id"] + extension_for(d["content_type"])
        out[key_hash(key)] = (d["history_item_id"], key)
    return out


def check_cache(cache_dir: Path, t: FakeTenant) -> tuple[int, int, list[str]]:
    """(complete blobs, .part files, problems): every complete blob must be its item's exact bytes."""
    owners, blobs, parts, problems = blob_owners(t), 0, 0, []
    for path in (cache_dir / "blobs" / "data").glob("*/*"):
        if path.name.endswith(".part"):
            parts += 1
        elif path.name not in owners:
            problems.append(f"unknown blob {path.name}")
        elif path.read_bytes() != t.library.audio_bytes(owners[path.name][0]):
            problems.append(f"wrong bytes in the blob of {owners[path.name][1]}")
        else:
            blobs += 1
    return blobs, parts, problems


# -- the mount process ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int

    def as_dict(self) -> dict[str, int]:
        return {"rss_mb": round(self.rss_kb / 1024, 1), "fds": self.fds}  # type: ignore[dict-item]


def usage(pid: int) -> Usage:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Usage(rss, len(os.listdir(f"/proc/{pid}/fd")))


def alive(m: Mount) -> bool:
    return m.proc.poll() is None and _is_mounted(m.path)


def kill_mount(m: Mount, timeout: float = 15.0) -> None:
    """SIGKILL the mount process (not its fusermount helper) and wait until auto_unmount removed it."""
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while _is_mounted(m.path):
        if time.monotonic() >= deadline:  # seen once in many runs under the parallel suite: say what was left
            helpers = subprocess.run(["pgrep", "-af", "fusermount"], capture_output=True, text=True).stdout.strip()
            raise AssertionError(f"auto_unmount did not remove the dead mount (fusermount processes: {helpers or 'none'})")
        time.sleep(0.02)


def stats_json(m: Mount) -> dict[str, Any]:
    return json.loads((m.path / ".historyfs" / "stats.json").read_bytes())  # type: ignore[no-any-return]



# -- copying -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RsyncRun:
    returncode: int
    read_errors: int  # files rsync reported an I/O error for
    stderr: str


def rsync(src: Path, dst: Path, timeout: float = HANG_LIMIT) -> RsyncRun:
    done = subprocess.run(["rsync", "-a", f"{src}/", str(dst)], capture_output=True, text=True, timeout=timeout)
    errors = sum(1 for line in done.stderr.splitlines() if "Input/output error" in line)
    return RsyncRun(done.returncode, errors, done.stderr[-3000:])


def fault_counts(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Faults the server injected between two ``stats()`` snapshots, by kind."""

    def status(stats: dict[str, Any], code: str) -> int:
        return sum(by.get(code, 0) for by in stats["requests"].values())

    return {
        "429": status(after, "429") - status(before, "429"),
        "500": status(after, "500") - status(before, "500"),
        "503": status(after, "503") - status(before, "503"),
        "truncated": after["truncated"] - before["truncated"],
        "resets": after["resets"] - before["resets"],
    }


# -- the report --------------------------------------------------------------------------------
@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Figures of one test: kept under its name in the JSON report and shown as properties."""
    figures: dict[str, Any] = {}
    yield figures
    if figures:
        REPORT[request.node.name] = figures
        for k, v in figures.items():
            request.node.user_properties.append((k, v))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.write_sep("-", "reliability figures")
        for name, figures in REPORT.items():
            terminalreporter.write_line(f"{name}: {json.dumps(figures, sort_keys=True)}")
