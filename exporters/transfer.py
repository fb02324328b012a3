"""Moving items: stream each item's audio (API, or a mount's disk cache) into the exporter, many at once.

One ``HistoryClient`` (one connection pool) is shared by ``jobs`` worker threads. An item whose
stream fails transiently (Unavailable, TruncatedBody) is retried a few times; other errors fail
that item only. Ctrl-C sets the cancel event (workers stop between chunks), aborts the
exporter's in-flight transfers, and lets completed items be recorded. The manifest is flushed
every ``FLUSH_SECONDS`` so that even a killed run leaves most of its work recorded.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from historyfs.client import HistoryClient
from historyfs.errors import HistoryFSError, Unavailable

from .base import Cancelled, Exporter, ItemUpload
from .plan import Task
from .progress import Progress

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per item, on transient API failures (the client already retried each request)
RETRY_PAUSE = 0.5  # seconds, times the attempt number
FLUSH_SECONDS = 10.0
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

    def move(self, task: Task) -> int:
        """Transfer ``task`` (retrying transient failures); returns the audio bytes stored."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._move_once(task)
            except Cancelled:
                raise
            except Unavailable as exc:
                if attempt == ATTEMPTS or self.cancel.is_set():
                    raise
                log.info("retrying %s after: %s", task.item.history_item_id, exc)
                time.sleep(RETRY_PAUSE * attempt)
        raise AssertionError("unreachable")

    def _move_once(self, task: Task) -> int:
        if self.cancel.is_set():
            raise Cancelled("transfer cancelled")
        with self._source(task) as (audio, content_type):
            upload = ItemUpload(task.item.history_item_id, task.audio_key, task.sidecar_key, audio, task.sidecar, content_type, task.format, self.cancel)
            entries = self.exporter.put_item(upload)
        if isinstance(audio, io.BufferedReader):
            self.progress.add_bytes(entries[0].size)
        return entries[0].size

    @contextmanager
    def _source(self, task: Task) -> Iterator[tuple[Iterable[bytes], str]]:
        """The audio and its content type: the cached file itself, or chunks of the download or audio endpoint."""
        item = task.item
        cached = open_cached(self.cache_dir, task.cache_key)
        if cached is not None:
            with cached:
                yield cached, WAV_CONTENT_TYPE if task.transcode else item.content_type
        elif task.transcode:
            with self.client.download([item.history_item_id], output_format="wav") as stream:
                yield self._counted(stream.iter_bytes()), WAV_CONTENT_TYPE
        else:
            with self.client.audio(item.history_item_id) as stream:
                yield self._counted(stream.iter_bytes()), stream.content_type or item.content_type

    def _counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.progress.add_bytes(len(chunk))
            yield chunk


def run_all(tasks: Sequence[Task], mover: Mover, jobs: int) -> tuple[int, int, list[str]]:
    """Run every task on ``jobs`` threads; (uploaded, audio bytes, error lines). Ctrl-C cancels cleanly."""
    uploaded, nbytes, errors = 0, 0, []
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="export")
    last_flush = time.monotonic()
    try:
        futures: dict[Future[int], Task] = {pool.submit(mover.move, t): t for t in tasks}
        for fut in as_completed(futures):
            ok, n, err = _outcome(fut, futures[fut])
            uploaded, nbytes = uploaded + ok, nbytes + n
            errors += [err] if err else []
            mover.progress.item_done(bool(ok))
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                mover.exporter.flush()
                last_flush = time.monotonic()
    except BaseException:
        _cancel(pool, mover)
        raise
    pool.shutdown(wait=True)
    return uploaded, nbytes, errors


def _outcome(fut: Future[int], task: Task) -> tuple[int, int, str | None]:
    try:
        return 1, fut.result(), None
    except (HistoryFSError, OSError) as exc:
        line = f"{task.audio_key}: {exc}"
        log.info("export failed: %s", line)
        return 0, 0, line


def _cancel(pool: ThreadPoolExecutor, mover: Mover) -> None:
    """Stop everything now: no new tasks, workers stop between chunks, in-flight uploads aborted."""
    mover.cancel.set()
    pool.shutdown(wait=False, cancel_futures=True)
    try:
        mover.exporter.abort()
    finally:
        pool.shutdown(wait=True)
