"""statfs (what `df` shows): the cache's limit as the size, the room left under it as free space."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from historyfs.cache import BlobCache
from historyfs.core import BLOCK, HistoryFS, Options
from historyfs.fetcher import Fetcher
from historyfs.index import Index
from tests.fixtures.mount import GatedSource, library_items


def _fs(tmp_path: Path, max_size: int | None) -> tuple[HistoryFS, BlobCache]:
    items = library_items(4)
    index = Index(tmp_path / "i.db", ZoneInfo("UTC"))
    index.replace_all(items)
    cache = BlobCache(tmp_path / "blobs", max_size=max_size)
    fs = HistoryFS(index, Fetcher(cache, GatedSource({}), index), None, Options())
    return fs, cache


def _put(cache: BlobCache, key: str, data: bytes) -> None:
    w = cache.writer(key)
    w.write(data)
    w.commit()


def test_size_is_the_limit_and_free_is_the_room_left(tmp_path: Path) -> None:
    fs, cache = _fs(tmp_path, 1 << 20)
    try:
        empty = fs.statfs()
        assert empty["f_blocks"] * empty["f_frsize"] == 1 << 20 and empty["f_bavail"] == empty["f_blocks"]
        _put(cache, "a.mp3", b"x" * (10 * BLOCK))
        used = fs.statfs()
        assert used["f_blocks"] == empty["f_blocks"] and used["f_bfree"] == used["f_bavail"] == empty["f_blocks"] - 10
        assert used["f_files"] == 8  # 4 items: audio and sidecar
    finally:
        cache.close()


def test_without_a_limit_the_size_is_what_is_used(tmp_path: Path) -> None:
    fs, cache = _fs(tmp_path, None)
    try:
        _put(cache, "a.mp3", b"x" * (BLOCK + 1))
        assert (fs.statfs()["f_blocks"], fs.statfs()["f_bfree"]) == (2, 0)
    finally:
        cache.close()
