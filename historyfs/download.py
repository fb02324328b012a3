"""One audio download in flight (``Download``) and the handles readers hold on bytes (``Blob``).

A ``Download`` is shared by every reader of its key (single-flight, see ``fetcher``). Its size is
the response's Content-Length, or unknown (None) until the body ends when the API sends none
(chunked): readers then get bytes as they arrive and learn the end when the download does. A
``Blob`` reads a complete cached file, or the growing ``.part`` file of a download, waiting on
the download's condition variable until the bytes it asks for have arrived. No network, no paths.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

from .errors import AuthError, NotFound, Unavailable


class Fetch(NamedTuple):
    """What to fetch: cache key, item id, and the download format (None = the item's own audio)."""

    key: str
    item_id: str
    fmt: str | None = None


class Download:
    """One in-flight fetch of one key, shared by every reader (single-flight)."""

    def __init__(self, job: Fetch, *, background: bool = False) -> None:
        self.job = job
        self.background = background  # started ahead of any reader (read-ahead, sizes learned ahead): read-only
        self.cond = threading.Condition()
        self.size: int | None = None  # Content-Length once headers arrived (None: none sent); guarded by cond
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

    def ended(self) -> None:
        """The whole body is on disk (its commit to the cache, an fsync of it all, still to come): a
        body of unknown length now has its exact size, and a stat waiting for it need not wait longer."""
        with self.cond:
            if self.size is None:
                self.size = self.written
            self.cond.notify_all()

    def finish(self, error: Exception | None) -> None:
        with self.cond:
            self.done, self.error = True, error
            if error is None:
                self.size = self.written
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self.cond.notify_all()

    def _failed(self) -> Exception:
        """What a reader of a failed download gets: the API's own answer (no such item, a refused key)
        as it was, so that a stat says ENOENT as an open does; any other failure as Unavailable (EIO)."""
        if isinstance(self.error, (NotFound, AuthError)):
            return self.error
        return Unavailable(f"download of {self.job.key} failed: {self.error}")

    def attach(self, timeout: float | None = None) -> tuple[int | None, int | None]:
        """Wait until the body starts (or the end); return (dup'ed fd, or None if done, and the size if known)."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.done or self.started, timeout):
                raise Unavailable(f"download of {self.job.key} has not started after {timeout:.0f} s")
            if self.error is not None:
                raise self.error
            if self.done:
                return None, self.written
            assert self.fd is not None
            return os.dup(self.fd), self.size

    def known_size(self, timeout: float) -> int:
        """The exact size: the Content-Length, else the length once the body ended; Unavailable after ``timeout``."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.done or (self.started and self.size is not None), timeout):
                raise Unavailable(f"the size of {self.job.key} is not known after {timeout:.0f} s")
            if self.error is not None:
                raise self._failed()
            assert self.size is not None
            return self.size

    def wait_for(self, end: int) -> int:
        """Block until ``end`` bytes are on disk or the body ended; the end of what is readable.

        Raises the download's error if it failed before ``end``.
        """
        with self.cond:
            self.cond.wait_for(lambda: self.written >= end or self.done)
            if self.written >= end:
                return end
            if self.error is not None:
                raise self._failed()
            return self.written


class Blob:
    """An open handle on one key's bytes (what a FUSE file handle holds)."""

    def __init__(self, fd: int, size: int | None, download: Download | None = None) -> None:
        self.fd, self.download = fd, download
        self._size = size  # None: the API sent no length and the body has not ended yet
        self.complete = download is None  # cached and verified before open

    @property
    def size_known(self) -> bool:
        return self._size is not None or (self.download is not None and self.download.done)

    def size(self, timeout: float | None = None) -> int:
        """The exact size, waiting for the end of a body of unknown length (Unavailable after ``timeout``)."""
        if self._size is None:
            assert self.download is not None
            self._size = self.download.known_size(timeout if timeout is not None else 1e9)
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        end = offset + n if self._size is None else min(offset + n, self._size)
        if end <= offset:
            return b""
        if self.download is not None:
            end = self.download.wait_for(end)
            if end <= offset:
                return b""
        return os.pread(self.fd, end - offset, offset)

    def close(self) -> None:
        os.close(self.fd)


def deadline_left(started: float, deadline: float) -> float:
    """Seconds left of ``deadline`` counted from ``started`` (monotonic), never negative."""
    return max(0.0, deadline - (time.monotonic() - started))
