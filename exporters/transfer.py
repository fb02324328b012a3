"""Moving items: stream each item's audio (API, or a mount's disk cache) into the exporter, many at once.

One ``HistoryClient`` (one connection pool) is shared by ``jobs`` worker threads. The client
retries every request itself (within its deadline) except a body cut short after its first byte
(TruncatedBody): only that is retried here, a few times. Any other error fails that item only,
so an item never takes much longer than the client's deadline (no retry of a retry). Ctrl-C
sets the cancel event (workers stop between chunks), aborts the exporter's in-flight transfers,
and lets completed items be recorded; a stop request (``--watch`` on SIGTERM) first lets them
finish for ``STOP_GRACE`` seconds. The manifest is flushed every ``FLUSH_SECONDS`` so that even
a killed run leaves most of its work recorded.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from historyfs.errors import HistoryFSError, TruncatedBody

from .base import Cancelled, Entry, Exporter, ItemUpload
from .plan import Task
from .progress import Progress

if TYPE_CHECKING:
    from historyfs.client import HistoryClient

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per item, on bodies cut short (the client retried everything else already)
RETRY_PAUSE = 0.5  # seconds, times the attempt number
FLUSH_SECONDS = 2.0  # a killed run loses at most this much recorded work (the objects stay; a re-run re-uploads them)
STOP_GRACE = 5.0  # seconds in-flight transfers may take to finish once a stop is requested (--watch and SIGTERM)
STOP_CHECK = 0.2  # seconds between looks at the clock while stopping
WAV_CONTENT_TYPE = "audio/wav"


def cached_blob(cache_dir: Path | None, key: str) -> Path | None:
    """The mount's cached blob for ``key`` if present (read-only; needs BlobCache.peek_path)."""
    if cache_dir is None:
        return None
    peek = cache_peeker()
    path = peek(cache_dir, key) if peek is not None else None
    return Path(path) if path is not None and Path(path).is_file() else None


def open_cached(cache_dir: Path | None, key: str) -> IO[bytes] | None:
    """The cached blob opened for reading, or None (absent, or evicted between lookup and open)."""
    path = cached_blob(cache_dir, key)
    if path is None:
        return None
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        return None


def cache_peeker() -> Callable[[Path, str], Path | None] | None:
    """``historyfs.cache.BlobCache.peek_path`` when the cache module offers it, else None."""
    try:
        from historyfs.cache import BlobCache  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return getattr(BlobCache, "peek_path", None)


class Mover:
    """Transfers one Task at a time (thread-safe: one per run, called from every worker)."""

    def __init__(self, exporter: Exporter, client: HistoryClient, progress: Progress, cancel: threading.Event, cache_dir: Path | None = None) -> None:
        self.exporter, self.client, self.progress = exporter, client, progress
        self.cancel, self.cache_dir = cancel, cache_dir
        self._flushed = time.monotonic()  # when the manifest was last persisted (used by the run's loop only)

    def move(self, task: Task) -> list[Entry]:
        """Transfer ``task`` (retrying transient failures); the entries recorded (audio, sidecar)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._move_once(task)
            except Cancelled:
                raise
            except TruncatedBody as exc:
                if attempt == ATTEMPTS or self.cancel.is_set():
                    raise
                log.info("retrying %s after: %s", task.item.history_item_id, exc)
                time.sleep(RETRY_PAUSE * attempt)
        raise AssertionError("unreachable")

    def _move_once(self, task: Task) -> list[Entry]:
        if self.cancel.is_set():
            raise Cancelled("transfer cancelled")
        with self._source(task) as (audio, content_type, size):
            upload = ItemUpload(task.item.history_item_id, task.audio_key, task.sidecar_key, audio, task.sidecar, content_type, task.format, self.cancel, size)
            entries = self.exporter.put_item(upload)
        if isinstance(audio, io.IOBase):
            self.progress.add_bytes(entries[0].size)
        return entries

    @contextmanager
    def _source(self, task: Task) -> Iterator[tuple[Iterable[bytes], str, int | None]]:
        """The audio, its content type and announced size: the cached file itself, or chunks of the download or audio endpoint."""
        item = task.item
        cached = open_cached(self.cache_dir, task.cache_key)
        if cached is not None:
            with cached:
                yield cached, WAV_CONTENT_TYPE if task.transcode else item.content_type, os.fstat(cached.fileno()).st_size
        elif task.transcode:
            with self.client.download([item.history_item_id], output_format="wav") as stream:
                yield self._counted(stream.iter_bytes()), WAV_CONTENT_TYPE, stream.content_length
        else:
            with self.client.audio(item.history_item_id) as stream:
                yield self._counted(stream.iter_bytes()), stream.content_type or item.content_type, stream.content_length

    def flush_every(self, seconds: float) -> None:
        """Persist the exporter's manifest if ``seconds`` passed since the last time (called by the run's loop only)."""
        now = time.monotonic()
        if now - self._flushed >= seconds:
            self.exporter.flush()
            self._flushed = now

    def _counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.progress.add_bytes(len(chunk))
            yield chunk


@dataclass(slots=True)
class Outcome:
    """What ``run_all`` did: items uploaded, their audio bytes, error lines, the entries recorded."""

    uploaded: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)
    done: list[Task] = field(default_factory=list)  # the tasks uploaded


def run_all(tasks: Sequence[Task], mover: Mover, jobs: int, stop: threading.Event | None = None, grace: float = STOP_GRACE) -> Outcome:
    """Run every task on ``jobs`` threads. Ctrl-C cancels cleanly. Once ``stop`` is set no new task
    starts, and what is in flight gets ``grace`` seconds to finish before it is cancelled (a
    cancelled upload leaves nothing: see Exporter.abort).

    Tasks are handed to the pool a few at a time and their results come back through a queue (not
    ``wait`` over every future: that is O(n) per completion). What finished is recorded (the
    manifest flushed) every ``FLUSH_SECONDS`` even while long transfers are still running, so a
    killed run leaves its completed items recorded."""
    out, done = Outcome(), queue.SimpleQueue[tuple["Future[list[Entry]]", Task]]()
    todo = iter(tasks)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="export")
    stopping = _Stopping(stop, grace, mover)

    def submit() -> int:
        task = None if stopping.requested() else next(todo, None)
        if task is None:
            return 0
        pool.submit(mover.move, task).add_done_callback(lambda f, t=task: done.put((f, t)))  # type: ignore[misc]
        return 1

    try:
        running = sum(submit() for _ in range(2 * max(1, jobs)))
        while running:
            try:
                fut, task = done.get(timeout=STOP_CHECK if stopping.requested() else FLUSH_SECONDS)
            except queue.Empty:
                pass
            else:
                _count(out, fut, task, mover.progress)
                running += submit() - 1
            mover.flush_every(FLUSH_SECONDS)
            stopping.cancel_when_late()
    except BaseException:
        _cancel(pool, mover)
        raise
    pool.shutdown(wait=True)
    return out


class _Stopping:
    """A stop request, and cancelling what is in flight once its grace period is over."""

    def __init__(self, stop: threading.Event | None, grace: float, mover: Mover) -> None:
        self.stop, self.grace, self.mover = stop, grace, mover
        self.since: float | None = None

    def requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def cancel_when_late(self) -> None:
        if not self.requested() or self.mover.cancel.is_set():
            return
        self.since = self.since if self.since is not None else time.monotonic()
        if time.monotonic() - self.since >= self.grace:
            log.info("abandoning the transfers still in flight")
            self.mover.cancel.set()
            self.mover.exporter.abort()


def _count(out: Outcome, fut: Future[list[Entry]], task: Task, progress: Progress) -> None:
    try:
        entries = fut.result()
    except (HistoryFSError, OSError) as exc:
        line = f"{task.audio_key}: {exc}"
        log.info("export failed: %s", line)
        out.errors.append(line)
        progress.item_done(False)
        return
    out.uploaded += 1
    out.bytes += entries[0].size
    out.entries.update({task.audio_key: entries[0], task.sidecar_key: entries[1]})
    out.done.append(task)
    progress.item_done(True)


def _cancel(pool: ThreadPoolExecutor, mover: Mover) -> None:
    """Stop everything now: no new tasks, workers stop between chunks, in-flight uploads aborted."""
    mover.cancel.set()
    pool.shutdown(wait=False, cancel_futures=True)
    try:
        mover.exporter.abort()
    finally:
        pool.shutdown(wait=True)
