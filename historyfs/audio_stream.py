"""An audio response being received: its type, its announced length (if any) and its bytes.

Owns the rule that a body is whole only if it reached its end: Content-Length bytes, or the
chunked framing's last chunk (httpx raises when it never comes). Gives the request's slot back
to the concurrency budget as soon as the body has been read to its end or the stream is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import httpx

from .errors import TruncatedBody
from .protocol import body_length

#: Bytes per chunk handed to callers of ``AudioStream.iter_bytes``.
CHUNK_SIZE = 64 * 1024
_CUT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout)


class ByteCounter(Protocol):
    def add_bytes(self, n: int) -> None: ...


class AudioStream:
    """The body of GET .../audio or POST .../download, streamed; ``content_length`` is None when unannounced."""

    def __init__(self, response: httpx.Response, stats: ByteCounter, done: Callable[[], None] = lambda: None) -> None:
        self._response = response
        self._stats = stats
        self._done = done
        self.content_type: str = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        self.content_length: int | None = body_length(response)
        self.received = 0

    def _truncated(self, cause: Exception | None = None) -> TruncatedBody:
        what = f"{self._response.request.method} {self._response.request.url.path}"
        expected = "?" if self.content_length is None else self.content_length
        detail = f" ({cause.__class__.__name__})" if cause else ""
        return TruncatedBody(f"{what}: body cut short after {self.received} of {expected} bytes{detail}", expected=self.content_length, received=self.received)

    def _count(self, chunk: bytes) -> bytes:
        self.received += len(chunk)
        self._stats.add_bytes(len(chunk))
        return chunk

    def _finish(self) -> None:
        self._done()
        if self.content_length is not None and self.received != self.content_length:
            raise self._truncated()

    def iter_bytes(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The body in chunks; raises TruncatedBody if it ends before its announced end."""
        try:
            for chunk in self._response.iter_bytes(chunk_size):
                yield self._count(chunk)
        except _CUT as exc:
            self._done()
            raise self._truncated(exc) from None
        self._finish()

    async def aiter_bytes(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Async twin of ``iter_bytes``."""
        try:
            async for chunk in self._response.aiter_bytes(chunk_size):
                yield self._count(chunk)
        except _CUT as exc:
            self._done()
            raise self._truncated(exc) from None
        self._finish()

    def read(self) -> bytes:
        """The whole body (for small responses and tests)."""
        return b"".join(self.iter_bytes())
