"""The fetcher: single-flight downloads, reads served as bytes arrive, truncation and resume, read-ahead."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from historyfs.cache import BlobCache
from historyfs.download import Download
from historyfs.errors import NotFound, TruncatedBody, Unavailable
from historyfs.fetcher import BACKGROUND_WORKERS, RESUME_ATTEMPTS, Fetch, Fetcher
from historyfs.readahead import FolderScout, ReadAhead
from tests.fixtures.mount import GatedSource

DATA = {f"item{i}": bytes([i]) * 1000 + bytes(range(256)) * (i + 1) for i in range(6)}


class Sizes:
    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def set_size(self, key: str, size: int) -> None:
        self.sizes[key] = size

    def size(self, key: str) -> int | None:
        return self.sizes.get(key)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Fetcher, GatedSource, BlobCache, Sizes]]:
    cache = BlobCache(tmp_path / "blobs")
    source, sizes = GatedSource(dict(DATA)), Sizes()
    fetcher = Fetcher(cache, source, sizes)
    fetcher.start()
    try:
        yield fetcher, source, cache, sizes
    finally:
        source.gate.set()
        fetcher.stop()
        cache.close()


def _read_all(fetcher: Fetcher, key: str, item_id: str) -> bytes:
    blob = fetcher.open(Fetch(key, item_id))
    try:
        return blob.read(0, 1 << 30)
    finally:
        fetcher.close(blob, key)


def test_open_downloads_once_then_serves_from_cache(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, sizes = parts
    assert _read_all(fetcher, "item1.mp3", "item1") == DATA["item1"]
    assert fetcher.wait_idle(10)
    assert _read_all(fetcher, "item1.mp3", "item1") == DATA["item1"]
    assert source.calls == [("item1", None)]
    assert cache.get_path("item1.mp3") is not None
    assert sizes.sizes["item1.mp3"] == len(DATA["item1"])
    assert fetcher.counters.get("cache_hits") == 1 and fetcher.counters.get("cache_misses") == 1


def test_concurrent_opens_share_one_download(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, _, _ = parts
    source.gate.clear()
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(_read_all(fetcher, "item2.mp3", "item2"))) for _ in range(8)]
    for t in threads:
        t.start()
    source.gate.set()
    for t in threads:
        t.join(10)
    assert results == [DATA["item2"]] * 8
    assert source.calls == [("item2", None)]


def test_reads_are_served_as_soon_as_their_bytes_arrived(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, _, _ = parts
    source.gate.clear()  # only the first half arrives
    blob = fetcher.open(Fetch("item3.mp3", "item3"))
    try:
        assert blob.size() == len(DATA["item3"]) and not blob.complete
        assert blob.read(0, 100) == DATA["item3"][:100]
        source.gate.set()
        assert blob.read(blob.size() - 50, 100) == DATA["item3"][-50:]
    finally:
        fetcher.close(blob, "item3.mp3")


def test_a_body_always_cut_short_fails_readers_and_caches_nothing(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, sizes = parts
    source.gate.clear()
    source.truncate = True
    blob = fetcher.open(Fetch("item4.mp3", "item4"))
    try:
        source.gate.set()
        with pytest.raises(Unavailable):
            blob.read(blob.size() - 10, 10)
    finally:
        fetcher.close(blob, "item4.mp3")
    assert fetcher.wait_idle(10)
    assert cache.get_path("item4.mp3") is None
    assert not list((cache.root / "data").glob("*/*.part"))
    assert sizes.sizes["item4.mp3"] == len(DATA["item4"])  # the announced size, never the partial one
    assert len(source.calls) == RESUME_ATTEMPTS  # asked again, then gave up
    source.truncate = False  # a later open starts a new download
    assert _read_all(fetcher, "item4.mp3", "item4") == DATA["item4"]
    assert len(source.calls) == RESUME_ATTEMPTS + 1


class FlakySource:
    """Serves ``data``; the first ``cuts`` bodies stop after ``cut_at`` bytes; ``variant`` changes later bodies."""

    def __init__(self, data: bytes, cuts: int, cut_at: int, variant: bytes | None = None) -> None:
        self.data, self.cuts, self.cut_at, self.variant = data, cuts, cut_at, variant
        self.calls = 0

    @contextlib.contextmanager
    def audio(self, item_id: str, *, background: bool = False) -> Iterator[SimpleNamespace]:
        self.calls += 1
        body = self.data if self.calls == 1 or self.variant is None else self.variant
        cut = self.calls <= self.cuts

        def chunks(chunk_size: int = 65536) -> Iterator[bytes]:
            end = self.cut_at if cut else len(body)
            for i in range(0, end, 1000):
                yield body[i : min(i + 1000, end)]
            if cut:
                raise TruncatedBody("cut", expected=len(body), received=end)

        yield SimpleNamespace(content_length=len(body), iter_bytes=chunks)

    def download(self, item_ids: list[str], output_format: str | None = None, *,
                 background: bool = False) -> contextlib.AbstractContextManager[SimpleNamespace]:
        raise NotImplementedError


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[BlobCache]:
    with BlobCache(tmp_path / "blobs") as c:
        yield c


def _fetch_with(cache: BlobCache, source: FlakySource, **kwargs: float) -> tuple[Fetcher, bytes | Exception]:
    fetcher = Fetcher(cache, source, Sizes(), **kwargs)  # type: ignore[arg-type]
    fetcher.start()
    try:
        return fetcher, _read_all(fetcher, "x.mp3", "x")
    except Exception as exc:
        return fetcher, exc
    finally:
        fetcher.wait_idle(10)
        fetcher.stop()


def test_a_body_cut_short_is_asked_again_and_resumed(cache: BlobCache) -> None:
    data = bytes(range(256)) * 40
    source = FlakySource(data, cuts=2, cut_at=3333)
    fetcher, got = _fetch_with(cache, source)
    assert got == data and source.calls == 3  # two resumes
    assert Path(cache.get_path("x.mp3") or "").read_bytes() == data


def test_a_retry_with_different_bytes_is_never_served_or_kept(cache: BlobCache) -> None:
    data = bytes(range(256)) * 40
    source = FlakySource(data, cuts=1, cut_at=5000, variant=bytes(len(data)))
    _, got = _fetch_with(cache, source)
    assert isinstance(got, Unavailable) and source.calls == 2
    assert cache.get_path("x.mp3") is None and not list((cache.root / "data").glob("*/*.part"))


def test_no_new_attempt_after_the_deadline(cache: BlobCache) -> None:
    data = bytes(range(256)) * 40
    source = FlakySource(data, cuts=1, cut_at=100)
    _, got = _fetch_with(cache, source, deadline=1e-9)
    assert isinstance(got, Unavailable) and source.calls == 1


def test_a_failing_size_store_does_not_fail_the_read(cache: BlobCache) -> None:
    class BrokenSizes:
        def set_size(self, key: str, size: int) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        def size(self, key: str) -> None:
            return None

    data = bytes(range(256)) * 4
    fetcher = Fetcher(cache, FlakySource(data, cuts=0, cut_at=0), BrokenSizes())  # type: ignore[arg-type]
    fetcher.start()
    try:
        assert _read_all(fetcher, "x.mp3", "x") == data
        assert _read_all(fetcher, "x.mp3", "x") == data  # from the cache
    finally:
        fetcher.stop()


def test_without_content_length_a_reader_gets_bytes_as_they_arrive(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, sizes = parts
    source.no_length, data = True, DATA["item5"]
    source.gate.clear()  # the second half waits
    blob = fetcher.open(Fetch("item5.mp3", "item5"))
    try:
        assert not blob.size_known
        assert blob.read(0, 100) == data[:100]  # before the body ends
        with pytest.raises(Unavailable):
            blob.size(timeout=0.05)  # the exact size waits for the end
        source.gate.set()
        assert blob.read(0, 1 << 30) == data and blob.size(timeout=10) == len(data)
    finally:
        fetcher.close(blob, "item5.mp3")
    assert fetcher.wait_idle(10) and sizes.sizes["item5.mp3"] == len(data)
    assert Path(cache.get_path("item5.mp3") or "").read_bytes() == data


def test_a_body_without_length_cut_short_is_never_kept(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, sizes = parts
    source.no_length, source.truncate = True, True
    with pytest.raises(Unavailable):  # at open or at the read, whichever comes after the failure
        blob = fetcher.open(Fetch("item4.mp3", "item4"))
        try:
            blob.read(0, 1 << 30)
        finally:
            fetcher.close(blob, "item4.mp3")
    assert fetcher.wait_idle(10)
    assert cache.get_path("item4.mp3") is None and "item4.mp3" not in sizes.sizes


def test_learn_size_uses_the_length_probe_when_the_api_offers_one(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, sizes = parts
    source.audio_length = lambda item_id, background=False: len(DATA[item_id])  # type: ignore[attr-defined]
    assert fetcher.learn_size(Fetch("item3.mp3", "item3")) == len(DATA["item3"])
    assert source.calls == [] and cache.get_path("item3.mp3") is None  # no body fetched
    assert sizes.sizes["item3.mp3"] == len(DATA["item3"])


def test_learn_size_downloads_when_there_is_no_probe(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, sizes = parts
    source.audio_length = lambda item_id, background=False: None  # type: ignore[attr-defined]  # the API answers no length
    source.no_length = True
    assert fetcher.learn_size(Fetch("item2.mp3", "item2")) == len(DATA["item2"])  # once the body ended
    assert fetcher.wait_idle(10)  # then it is committed to the cache
    assert source.calls == [("item2", None)] and cache.get_path("item2.mp3") is not None
    assert fetcher.learn_size(Fetch("item2.mp3", "item2")) == len(DATA["item2"])  # known now: no call
    assert source.calls == [("item2", None)]


def test_learn_size_of_an_item_deleted_elsewhere_says_not_found(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    """The API's own 404 reaches a stat as it reaches an open (ENOENT), not as a failed download (EIO)."""
    fetcher, source, _, _ = parts
    source.audio_length = lambda item_id, background=False: None  # type: ignore[attr-defined]  # the API answers no length
    source.fail = NotFound("no such history item")
    with pytest.raises(NotFound):
        fetcher.learn_size(Fetch("item2.mp3", "item2"))


def test_learn_size_fails_within_the_deadline_when_the_api_is_down(tmp_path: Path) -> None:
    source = GatedSource(dict(DATA))
    source.gate.clear()
    source.no_length = True  # the size is known only at the end, which never comes
    with BlobCache(tmp_path / "b") as cache:
        fetcher = Fetcher(cache, source, Sizes(), deadline=0.2)
        fetcher.start()
        try:
            with pytest.raises(Unavailable):
                fetcher.learn_size(Fetch("item1.mp3", "item1"))
        finally:
            source.gate.set()
            fetcher.wait_idle(10)
            fetcher.stop()


def test_learn_later_learns_many_in_the_background(tmp_path: Path) -> None:
    many = {f"m{i}": bytes([i % 256]) * (100 + i) for i in range(3 * BACKGROUND_WORKERS)}  # more jobs than workers
    source, sizes = GatedSource(many), Sizes()
    with BlobCache(tmp_path / "b") as cache:
        fetcher = Fetcher(cache, source, sizes)
        fetcher.start()
        try:
            for item_id in many:
                fetcher.learn_later(Fetch(f"{item_id}.mp3", item_id))
            assert fetcher.wait_idle(20)
        finally:
            fetcher.stop()
    assert sizes.sizes == {f"{i}.mp3": len(d) for i, d in many.items()}


def test_folder_scout_queues_a_folder_once() -> None:
    queued: list[str] = []
    scout = FolderScout(lambda job: queued.append(job.key))
    scout.first_unknown(("by-date", "a"), lambda: _chain(3))
    scout.first_unknown(("by-date", "a"), lambda: _chain(3))
    scout.first_unknown(("by-date", "b"), lambda: _chain(1))
    assert queued == ["k0", "k1", "k2", "k0"]


def test_api_failure_at_open_is_raised(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, _ = parts
    source.fail = Unavailable("API down")
    with pytest.raises(Unavailable):
        fetcher.open(Fetch("item0.mp3", "item0"))
    assert cache.get_path("item0.mp3") is None


def test_wav_uses_the_download_endpoint(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, _, _ = parts
    blob = fetcher.open(Fetch("item1.wav", "item1", "wav"))
    try:
        assert blob.read(0, 4) == b"RIFF"
    finally:
        fetcher.close(blob, "item1.wav")
    assert source.calls == [("item1", "wav")]


def test_prefetch_fills_the_cache_in_the_background(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, cache, _ = parts
    fetcher.prefetch(Fetch("item2.mp3", "item2"))
    assert fetcher.wait_idle(10)
    assert fetcher.counters.get("prefetches") == 1
    assert source.background == [True]  # yields to what a reader waits for
    assert cache.get_path("item2.mp3") is not None
    assert _read_all_cached(cache, "item2.mp3") == DATA["item2"]


def _read_all_cached(cache: BlobCache, key: str) -> bytes:
    path = cache.get_path(key)
    assert path is not None
    return Path(path).read_bytes()


def _chain(n: int) -> list[Fetch]:
    return [Fetch(f"k{i}", f"id{i}") for i in range(n)]


def test_readahead_grows_its_window_on_sequential_opens() -> None:
    queued: list[str] = []
    ra = ReadAhead(lambda job: queued.append(job.key))
    chain = _chain(100)
    successors = lambda i: (lambda n: chain[i + 1 : i + 1 + n])  # noqa: E731
    ra.opened("k0", successors(0))
    assert queued == []  # one open is not a pattern
    ra.opened("k1", successors(1))
    assert queued == ["k2", "k3"]
    ra.opened("k2", successors(2))
    assert queued[2:] == ["k3", "k4", "k5", "k6"]


def test_readahead_ignores_random_access() -> None:
    queued: list[str] = []
    ra = ReadAhead(lambda job: queued.append(job.key))
    chain = _chain(100)
    for i in (50, 3, 77, 20, 9):
        ra.opened(f"k{i}", lambda n, i=i: chain[i + 1 : i + 1 + n])
    assert queued == []


def test_readahead_follows_a_reader_that_permutes_a_folder() -> None:
    queued: list[str] = []
    ra = ReadAhead(lambda job: queued.append(job.key))
    chain = _chain(100)
    successors = lambda i: (lambda n: chain[i + 1 : i + 1 + n])  # noqa: E731
    for i in (0, 2, 1, 3, 5, 4, 6):  # `cp -r` opens a folder's files in inode order
        ra.opened(f"k{i}", successors(i))
    assert "k10" in queued and len(set(queued)) >= 8  # the window kept growing


def test_concurrent_length_probes_of_one_clip_share_one_request(parts: tuple[Fetcher, GatedSource, BlobCache, Sizes]) -> None:
    fetcher, source, _, _ = parts
    asked: list[str] = []
    release = threading.Event()

    def probe(item_id: str, background: bool = False) -> int:
        asked.append(item_id)
        release.wait(5)
        return len(DATA[item_id])

    source.audio_length = probe  # type: ignore[attr-defined]
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(fetcher.learn_size(Fetch("item1.mp3", "item1"))))
               for _ in range(4)]
    for th in threads:
        th.start()
    while not asked:
        threading.Event().wait(0.01)
    release.set()
    for th in threads:
        th.join(10)
    assert results == [len(DATA["item1"])] * 4 and asked == ["item1"]


def test_a_body_of_unknown_length_has_its_size_once_it_ended_before_its_commit(tmp_path: Path) -> None:
    """A stat waiting for a chunked body's size answers when the last byte is on disk, not after the fsync."""
    dl = Download(Fetch("item1.mp3", "item1"))
    part = tmp_path / "part"
    part.write_bytes(b"x" * 10)
    dl.begin(None, os.open(part, os.O_RDONLY))
    dl.progress(10)
    with pytest.raises(Unavailable):
        dl.known_size(0.01)  # the body may go on
    dl.ended()
    assert dl.known_size(0.01) == 10 and not dl.done
    dl.finish(None)
