"""An item's audio on its way to a store: read once, hashed once, held in memory only while small.

The base exporter hashes the chunks as they pass (``HashingChunks``), takes them into memory up
to the store's streaming threshold (``take``) and then either hands the store one ``bytes`` (its
sha256 known before the store sees it) or streams the rest as it arrives. ``spool`` is for
stores that cannot stream: the body goes to a temporary file past ``SPOOL_MEMORY_LIMIT``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from historyfs.errors import HistoryFSError

#: Audio up to this size is spooled in memory, larger audio in a temporary file (stores that cannot stream).
SPOOL_MEMORY_LIMIT = 4 * 1024 * 1024
#: Read size for local files (a mount's cache): few reads, few chunks.
FILE_CHUNK = 1024 * 1024
_COPY_CHUNK = 256 * 1024


class Cancelled(HistoryFSError):
    """A transfer was stopped because the run is being interrupted."""


def file_chunks(f: IO[bytes], size: int = FILE_CHUNK) -> Iterator[bytes]:
    """A local file from where it stands, in ``size`` pieces."""
    return iter(lambda: f.read(size), b"")


def hash_file(f: IO[bytes], cancel: threading.Event | None = None) -> Spooled:
    """A local file used in place (no copy): hashed and measured, then rewound."""
    hashed = HashingChunks(file_chunks(f), cancel)
    for _ in hashed:
        pass
    f.seek(0)
    return Spooled(f, hashed.sha256, hashed.size)


class HashingChunks:
    """Chunks passed through while their sha256 and total length are computed; Cancelled if ``cancel`` is set."""

    def __init__(self, chunks: Iterable[bytes], cancel: threading.Event | None = None) -> None:
        self._chunks, self._cancel = chunks, cancel
        self._digest = hashlib.sha256()
        self.size = 0
        self.finished = False  # the source ran out (every byte went through)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._cancel is not None and self._cancel.is_set():
                raise Cancelled("transfer cancelled")
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk
        self.finished = True

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def take(chunks: Iterator[bytes], limit: int) -> tuple[list[bytes], Iterator[bytes] | None]:
    """At least ``limit`` bytes of ``chunks`` (or all of them): (those chunks, the rest or None if none is left)."""
    head: list[bytes] = []
    total = 0
    while total < limit:
        chunk = next(chunks, None)
        if chunk is None:
            return head, None
        head.append(chunk)
        total += len(chunk)
    nxt = next(chunks, None)
    if nxt is None:
        return head, None
    return head, _prepend(nxt, chunks)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


@dataclass(slots=True)
class Spooled:
    """A stream copied to a seekable file while its sha256 and length are computed."""

    file: IO[bytes]
    sha256: str
    size: int


def spool(chunks: Iterable[bytes], cancel: threading.Event | None = None) -> Spooled:
    """Copy ``chunks`` into a spooled temporary file, hashing as it goes; Cancelled if ``cancel`` is set."""
    hashed = HashingChunks(chunks, cancel)
    f: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_LIMIT)  # noqa: SIM115 - returned
    try:
        for chunk in hashed:
            f.write(chunk)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return Spooled(f, hashed.sha256, hashed.size)


class SourceFailed(Exception):
    """Carries (as __cause__) an error raised by the chunks being written, not by the store."""


def marked(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, with any error they raise wrapped in ``SourceFailed`` so that a store can tell the
    download's own error (a cut body, a cancel) from its own."""
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except BaseException as exc:
            raise SourceFailed() from exc
        yield chunk


def copy_body(src: IO[bytes], dst: IO[bytes]) -> None:
    """Copy a body to a file object (helper for plugins)."""
    shutil.copyfileobj(src, dst, _COPY_CHUNK)
