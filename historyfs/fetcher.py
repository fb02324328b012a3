"""Audio downloads into the blob cache: single-flight, readable while they stream, plus read-ahead.

Owns: the in-flight downloads (one per cache key however many readers), the ``Blob`` handles
readers use (a complete cached file, or a download still growing: a read waits on a condition
variable until its bytes have arrived), and the sequential read-ahead that prefetches the next
items of a recursive copy. Knows nothing of paths or FUSE; sizes it learns go to a ``SizeSink``.

A body cut short (``TruncatedBody``: the API has no Range requests) is asked for again, up to
``RESUME_ATTEMPTS`` times while the download is younger than the deadline: the bytes already on
disk are compared with the new body's start (items never change; a difference fails the download
rather than serve mixed bytes), then the rest is appended, so readers just wait a little longer.

Concurrency and lock order: ``Fetcher._lock`` (the in-flight map) -> ``Download.cond`` (one
download's progress). ``ReadAhead._lock`` is a leaf. Downloads run on ``_demand`` (opened by a
reader) or ``_prefetch`` (read-ahead) thread pools, started by ``start()`` (the mount calls it in
FUSE ``init``, after any fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple, Protocol

from .errors import TruncatedBody, Unavailable
from .stats import Counters

log = logging.getLogger(__name__)

#: Downloads a reader is waiting for; above the client's connection cap they just queue.
DEMAND_WORKERS = 32
#: Read-ahead downloads at once: enough to hide ~30 ms of API latency per file for `cp -r`,
#: few enough not to starve what a reader is waiting for.
PREFETCH_WORKERS = 6
#: Furthest read-ahead (items queued ahead of a sequential reader); the window doubles from 2.
MAX_WINDOW = 16
#: Sequential readers tracked at once (e.g. several `cp -r` in parallel).
MAX_STREAMS = 16
#: Requests of one body at most, when it keeps being cut short (5% truncation: 3e-7 of giving up).
RESUME_ATTEMPTS = 5
#: Without a deadline from the source's retry policy, no new attempt starts after this many seconds.
DEFAULT_DEADLINE = 60.0


class Stream(Protocol):
    content_length: int | None

    def iter_bytes(self, chunk_size: int = ...) -> Iterator[bytes]: ...


class Source(Protocol):
    """Where bytes come from (``HistoryClient``)."""

    def audio(self, item_id: str) -> AbstractContextManager[Stream]: ...

    def download(self, item_ids: Sequence[str], output_format: str | None = None) -> AbstractContextManager[Stream]: ...


class PartWriter(Protocol):
    """A blob being written (``cache.PartialBlob``)."""

    path: Path
    written: int

    def write(self, data: bytes) -> int: ...

    def commit(self, expected_size: int | None = None) -> Path: ...

    def abort(self) -> None: ...


class SizeSink(Protocol):
    """Where learned sizes go (``Index``)."""

    def set_size(self, key: str, size: int) -> None: ...


class Fetch(NamedTuple):
    """What to fetch: cache key, item id, and the download format (None = the item's own audio)."""

    key: str
    item_id: str
    fmt: str | None = None


class Download:
    """One in-flight fetch of one key, shared by every reader (single-flight)."""

    def __init__(self, job: Fetch) -> None:
        self.job = job
        self.cond = threading.Condition()
        self.size: int | None = None  # Content-Length once headers arrived; guarded by cond
        self.written = 0  # guarded by cond
        self.started = False  # headers seen and the .part file exists; guarded by cond
        self.done = False  # guarded by cond
        self.error: Exception | None = None  # guarded by cond
        self.fd: int | None = None  # read fd on the .part file while running; guarded by cond

    def begin(self, size: int | None, fd: int) -> None:
        with self.cond:
            self.size, self.fd, self.started = size, fd, True
            self.cond.notify_all()

    def progress(self, n: int) -> None:
        with self.cond:
            self.written += n
            self.cond.notify_all()

    def finish(self, error: Exception | None) -> None:
        with self.cond:
            self.done, self.error = True, error
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self.cond.notify_all()

    def attach(self) -> tuple[int | None, int | None]:
        """Wait until the size is known (or the end); return (dup'ed fd or None if done, size)."""
        with self.cond:
            self.cond.wait_for(lambda: self.done or (self.started and self.size is not None))
            if self.error is not None:
                raise self.error
            if self.done:
                return None, self.written
            assert self.fd is not None
            return os.dup(self.fd), self.size

    def wait_for(self, end: int) -> None:
        """Block until ``end`` bytes are on disk; raise the download's error if it failed first."""
        with self.cond:
            self.cond.wait_for(lambda: self.written >= end or self.done)
            if self.error is not None:
                raise Unavailable(f"download of {self.job.key} failed: {self.error}")


class Blob:
    """An open handle on one key's bytes (what a FUSE file handle holds)."""

    def __init__(self, fd: int, size: int, download: Download | None = None) -> None:
        self.fd, self.size, self.download = fd, size, download
        self.complete = download is None  # cached and verified before open

    def read(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size)
        if end <= offset:
            return b""
        if self.download is not None:
            self.download.wait_for(end)
        return os.pread(self.fd, end - offset, offset)

    def close(self) -> None:
        os.close(self.fd)


class Fetcher:
    """Opens blobs from the cache, downloading (once) what is missing."""

    def __init__(self, cache: object, source: Source, sizes: SizeSink, counters: Counters | None = None,
                 deadline: float | None = None) -> None:
        self.cache = cache  # historyfs.cache.BlobCache (get_path, writer, pin, unpin, make_room)
        self.source = source
        self.sizes = sizes
        self.counters = counters or Counters()
        # No new attempt at a body starts later than this after the first (default: the client's).
        self.deadline = deadline or getattr(getattr(source, "retry", None), "deadline", None) or DEFAULT_DEADLINE
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a download ends
        self._inflight: dict[str, Download] = {}  # guarded by _lock
        self._queued: set[str] = set()  # prefetches not started yet; guarded by _lock
        self._demand: ThreadPoolExecutor | None = None
        self._prefetch: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker pools (after fork: call from FUSE init)."""
        self._demand = ThreadPoolExecutor(DEMAND_WORKERS, thread_name_prefix="historyfs-dl")
        self._prefetch = ThreadPoolExecutor(PREFETCH_WORKERS, thread_name_prefix="historyfs-ra")

    def stop(self) -> None:
        for pool in (self._prefetch, self._demand):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no download runs or is queued; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._inflight and not self._queued, timeout)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    # -- opening ---------------------------------------------------------------------------
    def open(self, job: Fetch) -> Blob:
        """A handle on ``job.key``'s bytes; returns once the size is known. Pins the key until close."""
        self.cache.pin(job.key)  # type: ignore[attr-defined]
        try:
            return self._open_pinned(job)
        except BaseException:
            self.cache.unpin(job.key)  # type: ignore[attr-defined]
            raise

    def close(self, blob: Blob, key: str) -> None:
        blob.close()
        self.cache.unpin(key)  # type: ignore[attr-defined]

    def _open_pinned(self, job: Fetch) -> Blob:
        missed = False
        for _ in range(3):  # a download can finish (or be evicted) between two looks
            blob = self._open_cached(job.key)
            if blob is not None:
                self.counters.add("cache_misses" if missed else "cache_hits")
                return blob
            dl = self._join_or_start(job)
            if dl is None:
                continue
            missed = True
            fd, size = dl.attach()
            if fd is not None and size is not None:
                self.counters.add("cache_misses")
                return Blob(fd, size, dl)
        raise Unavailable(f"{job.key} could not be kept in the cache (is it full of open files?)")

    def _open_cached(self, key: str) -> Blob | None:
        path = self.cache.get_path(key)  # type: ignore[attr-defined]
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        size = os.fstat(fd).st_size
        self.sizes.set_size(key, size)
        return Blob(fd, size)

    def _join_or_start(self, job: Fetch) -> Download | None:
        """The running download of ``job`` or a new one; None if it is in the cache by now."""
        with self._lock:
            dl = self._inflight.get(job.key)
            if dl is None:
                if self.cache.get_path(job.key) is not None:  # type: ignore[attr-defined]
                    return None
                dl = self._inflight[job.key] = Download(job)
                self.counters.add("downloads_in_flight")
                assert self._demand is not None, "Fetcher.start() was not called"
                self._demand.submit(self._run, dl)
            return dl

    # -- read-ahead ----------------------------------------------------------------------
    def prefetch(self, job: Fetch) -> None:
        """Queue a background download of ``job`` unless cached, running or queued."""
        with self._lock:
            if job.key in self._inflight or job.key in self._queued or self._prefetch is None:
                return
            self._queued.add(job.key)
        self._prefetch.submit(self._prefetch_one, job)

    def _prefetch_one(self, job: Fetch) -> None:
        with self._lock:
            self._queued.discard(job.key)
            if job.key in self._inflight or self.cache.get_path(job.key) is not None:  # type: ignore[attr-defined]
                return
            dl = self._inflight[job.key] = Download(job)
        self.counters.add("downloads_in_flight")
        self.counters.add("prefetches")
        self._run(dl)

    # -- the download itself ---------------------------------------------------------------
    def _stream(self, job: Fetch) -> AbstractContextManager[Stream]:
        if job.fmt is None:
            return self.source.audio(job.item_id)
        return self.source.download([job.item_id], output_format=job.fmt)

    def _run(self, dl: Download) -> None:
        error: Exception | None = None
        try:
            size = self._fetch_into_cache(dl)
            self._remember_size(dl.job.key, size)
        except Exception as exc:
            error = exc
            self.counters.add("downloads_failed")
            log.warning("download of %s failed: %s", dl.job.key, exc)
        finally:
            dl.finish(error)
            with self._lock:
                self._inflight.pop(dl.job.key, None)
                self._idle.notify_all()
            self.counters.add("downloads_in_flight", -1)

    def _remember_size(self, key: str, size: int) -> None:
        """Sizes are hints for stat: failing to store one (a full disk) must not fail a read."""
        try:
            self.sizes.set_size(key, size)
        except Exception as exc:
            log.warning("cannot record the size of %s: %s", key, exc)

    def _fetch_into_cache(self, dl: Download) -> int:
        """Stream the body into a part file (asking again where it was cut short), then commit it."""
        w: PartWriter | None
        started, w = time.monotonic(), None
        try:
            for attempt in range(1, RESUME_ATTEMPTS + 1):
                try:
                    with self._stream(dl.job) as stream:
                        w = w or self._begin(dl, stream)
                        self._append(dl, stream, w)
                    break
                except TruncatedBody as exc:
                    if w is None or attempt == RESUME_ATTEMPTS or time.monotonic() - started >= self.deadline:
                        raise
                    self.counters.add("download_resumes")
                    log.info("download of %s cut short (%s): asking again", dl.job.key, exc)
            assert w is not None
            w.commit(expected_size=dl.size)
        except BaseException:
            if w is not None:
                w.abort()
            raise
        return w.written

    def _begin(self, dl: Download, stream: Stream) -> PartWriter:
        """Room in the cache, a part file, and the size: readers may attach from here on."""
        self.cache.make_room(stream.content_length or 0)  # type: ignore[attr-defined]
        w: PartWriter = self.cache.writer(dl.job.key)  # type: ignore[attr-defined]
        try:
            dl.begin(stream.content_length, os.open(w.path, os.O_RDONLY | os.O_CLOEXEC))
        except BaseException:
            w.abort()
            raise
        if stream.content_length is not None:  # items never change: the size is known now
            self._remember_size(dl.job.key, stream.content_length)
        return w

    def _append(self, dl: Download, stream: Stream, w: PartWriter) -> None:
        """Copy the body after what an earlier attempt wrote (that part must be byte-identical)."""
        if stream.content_length != dl.size:
            raise Unavailable(f"{dl.job.key}: the API changed the size on a retry ({dl.size} -> {stream.content_length})")
        pos, have = 0, w.written
        for chunk in stream.iter_bytes():
            if pos < have:
                skip = min(len(chunk), have - pos)
                self._check_same(w.path, pos, chunk[:skip], dl.job.key)
                pos, chunk = pos + skip, chunk[skip:]
            if chunk:
                w.write(chunk)
                pos += len(chunk)
                dl.progress(len(chunk))
                self.counters.add("bytes_fetched", len(chunk))

    @staticmethod
    def _check_same(path: Path, offset: int, data: bytes, key: str) -> None:
        with open(path, "rb") as f:
            f.seek(offset)
            if f.read(len(data)) != data:
                raise Unavailable(f"{key}: the API sent different bytes on a retry; not kept")


class ReadAhead:
    """Spots sequential readers (each open is the successor of a previous one) and prefetches ahead.

    A reader's stream is keyed by the item it is expected to open next. Opening that item doubles
    the stream's window (2, 4, ... MAX_WINDOW) and queues that many successors; opening anything
    else starts a new stream with no prefetch, so random access costs nothing extra.
    """

    def __init__(self, prefetch: Callable[[Fetch], None]) -> None:
        self._prefetch = prefetch
        self._lock = threading.Lock()
        self._streams: OrderedDict[str, int] = OrderedDict()  # expected next key -> window; guarded

    def opened(self, key: str, successors: Callable[[int], Sequence[Fetch]]) -> None:
        """``key`` was opened; ``successors(n)`` lists up to n items that follow it."""
        with self._lock:
            previous = self._streams.pop(key, None)
        window = 0 if previous is None else min(max(2, previous * 2), MAX_WINDOW)
        following = successors(max(window, 1))
        if not following:
            return
        with self._lock:
            self._streams[following[0].key] = window
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
        for job in following[:window]:
            self._prefetch(job)

