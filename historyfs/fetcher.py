"""Audio downloads into the blob cache: single-flight, readable while they stream, and size learning.

Owns the in-flight downloads (one per cache key however many readers or stats wait for it) and
the two worker pools that run them: ``_demand`` for what a reader or a ``stat`` waits for,
``_background`` for read-ahead and for learning the sizes of a folder's other clips. Knows
nothing of paths or FUSE; sizes it learns go to a ``SizeSink`` (the index), kept forever.

A size is learned by the cheapest means the API offers: a running download's Content-Length, a
length probe without the body (``Source.audio_length``, when the API answers one), else the
whole body into the cache. A body cut short (``TruncatedBody``: the API has no Range requests)
is asked for again, up to ``RESUME_ATTEMPTS`` times while the download is younger than the
deadline: the bytes already on disk are compared with the new body's start (items never change;
a difference fails the download rather than serve mixed bytes), then the rest is appended.

Concurrency and lock order: ``Fetcher._lock`` (the in-flight map) -> ``Download.cond``. The
pools start in ``start()`` (the mount calls it in FUSE ``init``, after any fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from .download import Blob, Download, Fetch, deadline_left
from .errors import TruncatedBody, Unavailable
from .stats import Counters

__all__ = ["Blob", "BlobStore", "Fetch", "Fetcher", "Source"]

log = logging.getLogger(__name__)

#: Downloads a reader or a stat is waiting for; the client's concurrency budget gates the requests.
DEMAND_WORKERS = 32
#: Background downloads and probes at once (read-ahead, sizes of a folder's other clips): at least
#: the largest per-account concurrency (15), so the budget, not this pool, is the limit.
BACKGROUND_WORKERS = 16
#: Requests of one body at most, when it keeps being cut short (5% truncation: 3e-7 of giving up).
RESUME_ATTEMPTS = 5
#: Without a deadline from the source's retry policy, no new attempt starts after this many seconds.
DEFAULT_DEADLINE = 60.0


class Stream(Protocol):
    content_length: int | None

    def iter_bytes(self, chunk_size: int = ...) -> Iterator[bytes]: ...


class Source(Protocol):
    """Where bytes come from (``HistoryClient``). ``audio_length`` is optional (see ``_probe``).

    ``background`` requests (read-ahead, sizes learned ahead) yield to those a reader waits for.
    """

    def audio(self, item_id: str, *, background: bool = False) -> AbstractContextManager[Stream]: ...

    def download(self, item_ids: Sequence[str], output_format: str | None = None, *,
                 background: bool = False) -> AbstractContextManager[Stream]: ...


class PartWriter(Protocol):
    """A blob being written (``cache.PartialBlob``)."""

    path: Path
    written: int

    def write(self, data: bytes) -> int: ...

    def commit(self, expected_size: int | None = None) -> Path: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """What the fetcher needs of the disk cache (``cache.BlobCache``)."""

    def get_path(self, key: str) -> Path | None: ...

    def writer(self, key: str) -> PartWriter: ...

    def pin(self, key: str) -> None: ...

    def unpin(self, key: str) -> None: ...

    def make_room(self, needed: int = 0) -> int: ...


class SizeSink(Protocol):
    """Where learned sizes go, and where known ones are read (``Index``)."""

    def size(self, key: str) -> int | None: ...

    def set_size(self, key: str, size: int) -> None: ...


class Fetcher:
    """Opens blobs from the cache, downloading (once) what is missing; learns sizes."""

    def __init__(self, cache: BlobStore, source: Source, sizes: SizeSink, counters: Counters | None = None,
                 deadline: float | None = None) -> None:
        self.cache, self.source, self.sizes = cache, source, sizes
        self.counters = counters or Counters()
        # No new attempt at a body starts, and no stat waits, longer than this (default: the client's).
        self.deadline = deadline or getattr(getattr(source, "retry", None), "deadline", None) or DEFAULT_DEADLINE
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a download ends
        self._inflight: dict[str, Download] = {}  # guarded by _lock
        self._queued: set[str] = set()  # background jobs not started yet; guarded by _lock
        self._probing: dict[str, threading.Event] = {}  # length probes in flight, set when done; guarded by _lock
        self._demand: ThreadPoolExecutor | None = None
        self._background: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker pools (after fork: call from FUSE init)."""
        self._demand = ThreadPoolExecutor(DEMAND_WORKERS, thread_name_prefix="historyfs-dl")
        self._background = ThreadPoolExecutor(BACKGROUND_WORKERS, thread_name_prefix="historyfs-bg")

    def stop(self) -> None:
        for pool in (self._background, self._demand):
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
        """A handle on ``job.key``'s bytes, once its body has started. Pins the key until close."""
        self.cache.pin(job.key)
        try:
            return self._open_pinned(job)
        except BaseException:
            self.cache.unpin(job.key)
            raise

    def close(self, blob: Blob, key: str) -> None:
        blob.close()
        self.cache.unpin(key)

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
            fd, size = dl.attach(self.deadline)
            if fd is not None:
                self.counters.add("cache_misses")
                return Blob(fd, size, dl)
        raise Unavailable(f"{job.key} could not be kept in the cache (is it full of open files?)")

    def _open_cached(self, key: str) -> Blob | None:
        path = self.cache.get_path(key)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        size = os.fstat(fd).st_size
        self._remember_size(key, size)
        return Blob(fd, size)

    def _join_or_start(self, job: Fetch) -> Download | None:
        """The running download of ``job`` or a new one; None if it is in the cache by now."""
        with self._lock:
            dl = self._inflight.get(job.key)
            if dl is None:
                if self.cache.get_path(job.key) is not None:
                    return None
                dl = self._inflight[job.key] = Download(job)
                assert self._demand is not None, "Fetcher.start() was not called"
                self._demand.submit(self._run, dl)
            return dl

    # -- sizes -------------------------------------------------------------------------------
    def learn_size(self, job: Fetch) -> int:
        """The exact size of ``job``'s bytes, learned now if unknown; Unavailable after the deadline."""
        known = self.sizes.size(job.key)
        if known is not None:
            return known
        started = time.monotonic()
        for _ in range(3):  # a download can finish between two looks
            with self._lock:
                dl = self._inflight.get(job.key)
            if dl is None:
                probed = self._probe(job)
                if probed is not None:
                    return probed
                dl = self._join_or_start(job)
            if dl is not None:
                return dl.known_size(deadline_left(started, self.deadline))
            path = self.cache.get_path(job.key)
            if path is not None:
                try:
                    size = path.stat().st_size
                except FileNotFoundError:  # evicted between the two looks
                    continue
                self._remember_size(job.key, size)
                return size
        raise Unavailable(f"the size of {job.key} could not be learned")

    def learn_later(self, job: Fetch) -> None:
        """Learn ``job``'s size in the background (a probe, else the body into the cache)."""
        if self.sizes.size(job.key) is None:
            self._submit_background(job, self._learn_quietly)

    def _learn_quietly(self, job: Fetch) -> None:
        """On a background worker: a probe, else the download itself (on this worker: never wait for the pool)."""
        if job.key in self._inflight or self.sizes.size(job.key) is not None:
            return
        try:
            if self._probe(job, background=True) is None:
                self._prefetch_one(job)
        except Exception as exc:  # a hint: the stat that needs it will try again and report
            log.info("could not learn the size of %s: %s", job.key, exc)

    def _probe(self, job: Fetch, *, background: bool = False) -> int | None:
        """The length without the body, if the API offers that (native audio only), else None.

        One probe per key at a time: a stat and the folder's scout asking together share it.
        """
        probe = getattr(self.source, "audio_length", None)
        if probe is None or job.fmt is not None:
            return None
        with self._lock:
            gate = self._probing.get(job.key)
            mine = gate is None
            if mine:
                gate = self._probing[job.key] = threading.Event()
        if not mine:
            gate.wait(self.deadline)
            return self.sizes.size(job.key)
        try:
            size = probe(job.item_id, background=background)
        except Unavailable as exc:  # (NotFound is not one: it reaches the stat as ENOENT)
            log.info("length probe of %s failed (%s): downloading instead", job.key, exc)
            return None
        finally:
            with self._lock:
                self._probing.pop(job.key, None)
            gate.set()
        if size is not None:
            self._remember_size(job.key, int(size))
            self.counters.add("size_probes")
        return size

    # -- read-ahead ----------------------------------------------------------------------
    def prefetch(self, job: Fetch) -> None:
        """Queue a background download of ``job`` unless cached, running or queued."""
        self._submit_background(job, self._prefetch_one)

    def _submit_background(self, job: Fetch, work: object) -> None:
        with self._lock:
            if job.key in self._inflight or job.key in self._queued or self._background is None:
                return
            self._queued.add(job.key)
        self._background.submit(self._background_job, job, work)

    def _background_job(self, job: Fetch, work: object) -> None:
        with self._lock:
            self._queued.discard(job.key)
        try:
            work(job)  # type: ignore[operator]
        finally:
            with self._lock:
                self._idle.notify_all()

    def _prefetch_one(self, job: Fetch) -> None:
        with self._lock:
            if job.key in self._inflight or self.cache.get_path(job.key) is not None:
                return
            dl = self._inflight[job.key] = Download(job, background=True)
        self.counters.add("prefetches")
        self._run(dl)

    # -- the download itself ---------------------------------------------------------------
    def _stream(self, dl: Download) -> AbstractContextManager[Stream]:
        job = dl.job
        if job.fmt is None:
            return self.source.audio(job.item_id, background=dl.background)
        return self.source.download([job.item_id], output_format=job.fmt, background=dl.background)

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

    def _remember_size(self, key: str, size: int) -> None:
        """Failing to store a size (a full disk) must not fail a read: it is learned again next time."""
        try:
            self.sizes.set_size(key, size)
        except Exception as exc:
            log.warning("cannot record the size of %s: %s", key, exc)

    def _fetch_into_cache(self, dl: Download) -> int:
        """Stream the body into a part file (asking again where it was cut short), then commit it."""
        started, w = time.monotonic(), None
        try:
            for attempt in range(1, RESUME_ATTEMPTS + 1):
                try:
                    with self._stream(dl) as stream:
                        w = w or self._begin(dl, stream)
                        self._append(dl, stream, w)
                    break
                except TruncatedBody as exc:
                    if w is None or attempt == RESUME_ATTEMPTS or time.monotonic() - started >= self.deadline:
                        raise
                    log.info("download of %s cut short (%s): asking again", dl.job.key, exc)
            assert w is not None
            dl.ended()
            w.commit(expected_size=dl.size)
        except BaseException:
            if w is not None:
                w.abort()
            raise
        return w.written

    def _begin(self, dl: Download, stream: Stream) -> PartWriter:
        """Room in the cache, a part file, and the size if announced: readers may attach from here on."""
        self.cache.make_room(stream.content_length or 0)
        w = self.cache.writer(dl.job.key)
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
