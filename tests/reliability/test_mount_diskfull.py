"""A full disk under the cache folder (a tiny tmpfs): clean EIO, nothing corrupt kept, recovery after.

The tmpfs is mounted by a fixture that always unmounts it (root only). While it is full, a cold
read either returns the exact bytes or fails with EIO; stat, listings and sidecars keep working;
no partial blob is left or served later. Once space is freed, every read works and is exact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import mounted, needs_fuse
from tests.reliability.conftest import Expected, alive, check_cache, md5, stats_json

pytestmark = [needs_fuse, pytest.mark.fuse,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(chunk[:size])
    return filler


def _read_each(root: Path, want: Expected) -> tuple[int, int, list[str]]:
    """(exact reads, EIO reads, problems) over every audio file of the view."""
    ok = eio = 0
    problems: list[str] = []
    for rel in sorted(want.item_of):
        try:
            data = (root / rel).read_bytes()
        except OSError as exc:
            if exc.errno != errno.EIO:
                problems.append(f"{rel}: {exc}")
            eio += 1
            continue
        ok += 1
        if (md5(data), len(data)) != want.files[rel]:
            problems.append(f"{rel}: wrong bytes")
    return ok, eio, problems


def test_a_full_cache_disk_fails_reads_cleanly_then_recovers(small_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                                             report: dict[str, Any]) -> None:
    t = small_tenant(20, seed=71)
    want = Expected.of(t)
    (tmp_path / "mnt").mkdir()
    with tmpfs(tmp_path / "disk", "2m") as disk, \
            mounted(tmp_path / "mnt", t.base_url, t.api_key, disk / "cache") as m:
        filler = fill(disk)
        ok, eio, problems = _read_each(m.path / "by-voice", want)
        assert problems == [] and eio > 0, (ok, eio, problems)
        assert alive(m)
        listed = {str(p.relative_to(m.path / "by-voice")) for p in (m.path / "by-voice").rglob("*") if p.is_file()}
        assert listed == set(want.files)  # listings and stat need no disk
        sidecars = [rel for rel in want.files if rel.endswith(".json")]
        assert all(md5((m.path / "by-voice" / rel).read_bytes()) == want.files[rel][0] for rel in sidecars)
        blobs, parts, bad = check_cache(disk / "cache", t)
        assert (parts, bad) == (0, []), (parts, bad)  # nothing partial kept
        failed_downloads = stats_json(m)["downloads_failed"]
        filler.unlink()
        ok2, eio2, problems2 = _read_each(m.path / "by-voice", want)
        assert (eio2, problems2) == (0, [])
        assert check_cache(disk / "cache", t)[1:] == (0, [])
        report.update(reads_while_full={"exact": ok, "eio": eio}, downloads_failed=failed_downloads,
                      reads_after_freeing={"exact": ok2, "eio": eio2}, blobs_kept_while_full=blobs)


def test_when_other_files_fill_the_disk_old_blobs_make_room(small_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                                            report: dict[str, Any]) -> None:
    t = small_tenant(30, seed=72)
    want = Expected.of(t, sidecars=False)
    first, rest = sorted(want.item_of)[:10], sorted(want.item_of)[10:]
    (tmp_path / "mnt").mkdir()
    with tmpfs(tmp_path / "disk", "2m") as disk, \
            mounted(tmp_path / "mnt", t.base_url, t.api_key, disk / "cache") as m:
        for rel in first:  # cached: ~400 KB of blobs the cache may give back
            (m.path / "by-voice" / rel).read_bytes()
        fill(disk)
        ok, eio, problems = _read_each(m.path / "by-voice", Expected({r: want.files[r] for r in rest}, {r: "" for r in rest}))
        evictions = stats_json(m)["cache"]["evictions"]
        assert check_cache(disk / "cache", t)[1:] == (0, [])
        assert alive(m)
    report.update(reads_with_a_full_disk={"exact": ok, "eio": eio}, blobs_given_back=evictions)
    assert (ok, eio, problems) == (len(rest), 0, [])
    assert evictions > 0
