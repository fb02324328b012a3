"""History API clients: a sync one on a pooled httpx.Client and an async twin on httpx.AsyncClient.

Both delegate request building and response reading to ``protocol.Protocol`` and retry
decisions to ``retry.RetryPolicy``; only the sending loops differ (blocking vs awaiting).
Items are parsed into ``models`` once, here. Audio is streamed, never held whole. The client
never caches. Errors are those of ``errors``; no message carries the API key.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from .config import DEFAULT_API_URL
from .errors import ApiError, AuthError, OutcomeUnknown, TruncatedBody, Unavailable
from .models import HistoryItem, HistoryPage
from .protocol import ListFilters, Protocol, parse_json
from .retry import RetryPolicy, is_retryable_status

__all__ = ["AsyncHistoryClient", "AudioStream", "CallStats", "HistoryClient", "ListFilters", "RetryPolicy"]

#: Bytes per chunk handed to callers of ``AudioStream.iter_bytes``.
CHUNK_SIZE = 64 * 1024


class CallStats:
    """Thread-safe counters of API calls by endpoint and outcome, and bytes of audio received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._bytes = 0

    def record(self, endpoint: str, outcome: int | str) -> None:
        with self._lock:
            self._calls[endpoint][str(outcome)] += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": {k: dict(v) for k, v in self._calls.items()}, "bytes_received": self._bytes}

    def total_calls(self, endpoint: str | None = None) -> int:
        with self._lock:
            rows = [self._calls[endpoint]] if endpoint else list(self._calls.values())
            return sum(sum(r.values()) for r in rows)


class AudioStream:
    """An audio response being received: its type, its announced length, and its bytes."""

    def __init__(self, response: httpx.Response, stats: CallStats) -> None:
        self._response = response
        self._stats = stats
        self.content_type: str = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        length = response.headers.get("content-length")
        identity = response.headers.get("content-encoding", "identity") == "identity"
        self.content_length: int | None = int(length) if length and length.isdigit() and identity else None
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

    def _check_complete(self) -> None:
        if self.content_length is not None and self.received != self.content_length:
            raise self._truncated()

    def iter_bytes(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The body in chunks; raises TruncatedBody if it ends before Content-Length bytes."""
        try:
            for chunk in self._response.iter_bytes(chunk_size):
                yield self._count(chunk)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
            raise self._truncated(exc) from None
        self._check_complete()

    async def aiter_bytes(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Async twin of ``iter_bytes``."""
        try:
            async for chunk in self._response.aiter_bytes(chunk_size):
                yield self._count(chunk)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
            raise self._truncated(exc) from None
        self._check_complete()

    def read(self) -> bytes:
        """The whole body (for small responses and tests)."""
        return b"".join(self.iter_bytes())


class _Base:
    """What the sync and async clients share: configuration, protocol, stats, retry bookkeeping."""

    def __init__(self, api_key: str, base_url: str, retry: RetryPolicy | None, seed: int | None) -> None:
        if not api_key:
            raise AuthError("no API key given")
        self.protocol = Protocol(api_key, base_url)
        self.base_url = self.protocol.base_url
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self._rng = random.Random(seed)

    def _wait_or_raise(self, request: httpx.Request, attempt: int, started: float, waited: float, error: ApiError) -> float:
        """The wait before retrying after ``error``, or raise it when retries are spent.

        Time spent counts the waits already planned as well as the clock, so the deadline
        holds even where sleeping is cut short (tests) or the clock is coarse. A DELETE whose
        answer was lost is not repeated: the caller decides (it may have taken effect)."""
        retryable = isinstance(error, Unavailable) and (error.status is None or is_retryable_status(error.status))
        if isinstance(error, OutcomeUnknown) and request.method == "DELETE":
            retryable = False
        elapsed = max(time.monotonic() - started, waited)
        wait = self.retry.next_wait(attempt, elapsed, getattr(error, "retry_after", None), self._rng) if retryable else None
        if wait is None:
            if retryable and attempt > 0:
                error.args = (f"{error.message} (gave up after {attempt + 1} attempts)",)
            raise error
        return wait

    @staticmethod
    def _http_options(timeout: float, max_connections: int, transport: Any) -> dict[str, Any]:
        """The httpx.Client / httpx.AsyncClient settings both clients use."""
        return {
            "timeout": httpx.Timeout(timeout, connect=min(10.0, timeout)),
            "limits": httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            "transport": transport,
            "follow_redirects": True,
        }

    @staticmethod
    def _list_args(page_size: int, start_after: str | None, filters: dict[str, Any]) -> tuple[int, str | None, ListFilters]:
        return page_size, start_after, ListFilters(**filters)


class HistoryClient(_Base):
    """Blocking client; safe to share between threads (httpx.Client pools connections).

    Parameters:
        api_key: the ElevenLabs key (``config.load_api_key``).
        base_url: scheme://host[:port] of the API, without /v1.
        timeout: seconds for connect/read of one attempt.
        retry: the retry policy (attempts, backoff, deadline).
        transport: an httpx transport (tests pass httpx.MockTransport).
        max_connections: size of the connection pool.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 32,
        seed: int | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry, seed)
        self._http = httpx.Client(**self._http_options(timeout, max_connections, transport))

    # -- sending ---------------------------------------------------------------------
    def _send(self, endpoint: str, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """Send with retries. A 2xx response comes back with its body unread when ``stream``,
        else read whole (a body cut short is retried like any transport error)."""
        started, attempt, waited = time.monotonic(), 0, 0.0
        while True:
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                self.stats.record(endpoint, "error")
                error: ApiError = self.protocol.transport_error(request, exc)
            else:
                self.stats.record(endpoint, response.status_code)
                if response.is_success and stream:
                    return response
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    error = self.protocol.transport_error(request, exc)
                else:
                    if response.is_success:
                        return response
                    error = self.protocol.error_for(request, response)
                finally:
                    response.close()
            wait = self._wait_or_raise(request, attempt, started, waited, error)
            time.sleep(wait)
            attempt, waited = attempt + 1, waited + wait

    def _json(self, endpoint: str, request: httpx.Request) -> Any:
        return parse_json(self._send(endpoint, request, stream=False))

    # -- the five operations ---------------------------------------------------------
    def list_page(self, page_size: int = 100, start_after_history_item_id: str | None = None, **filters: Any) -> HistoryPage:
        """One page of GET /v1/history (filters: voice_id, model_id, date_before_unix, date_after_unix,
        sort_direction, search, source)."""
        return HistoryPage.from_json(self._json(*self.protocol.list_request(*self._list_args(page_size, start_after_history_item_id, filters))))

    def iter_pages(self, page_size: int = 1000, start_after_history_item_id: str | None = None, **filters: Any) -> Iterator[HistoryPage]:
        """Every page, following the cursor until ``has_more`` is false."""
        cursor = start_after_history_item_id
        while True:
            page = self.list_page(page_size, cursor, **filters)
            yield page
            if not page.has_more or not page.last_history_item_id or page.last_history_item_id == cursor:
                return
            cursor = page.last_history_item_id

    def iter_items(self, page_size: int = 1000, start_after_history_item_id: str | None = None, **filters: Any) -> Iterator[HistoryItem]:
        """Every matching item, newest first unless sort_direction="asc"."""
        for page in self.iter_pages(page_size, start_after_history_item_id, **filters):
            yield from page.items

    def get(self, item_id: str) -> HistoryItem:
        return HistoryItem.from_json(self._json(*self.protocol.get_request(item_id)))

    def delete(self, item_id: str) -> None:
        self._json(*self.protocol.delete_request(item_id))

    @contextmanager
    def audio(self, item_id: str) -> Iterator[AudioStream]:
        """GET /v1/history/{id}/audio as a stream."""
        with self._stream(*self.protocol.audio_request(item_id)) as stream:
            yield stream

    @contextmanager
    def download(self, item_ids: Sequence[str], output_format: str | None = None) -> Iterator[AudioStream]:
        """POST /v1/history/download: one id gives its audio, several a zip; output_format "wav" transcodes."""
        with self._stream(*self.protocol.download_request(item_ids, output_format)) as stream:
            yield stream

    @contextmanager
    def _stream(self, endpoint: str, request: httpx.Request) -> Iterator[AudioStream]:
        response = self._send(endpoint, request, stream=True)
        try:
            yield AudioStream(response, self.stats)
        finally:
            response.close()

    def check_auth(self) -> None:
        """One cheap call that fails with AuthError on a bad key (and Unavailable if unreachable)."""
        self.list_page(page_size=1)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HistoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHistoryClient(_Base):
    """The async twin of HistoryClient: the same methods, awaited; streams are async context managers."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        seed: int | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry, seed)
        self._http = httpx.AsyncClient(**self._http_options(timeout, max_connections, transport))

    async def _send(self, endpoint: str, request: httpx.Request, *, stream: bool) -> httpx.Response:
        import asyncio  # here, not at the top: the sync client (mount, export) never pays for it

        started, attempt, waited = time.monotonic(), 0, 0.0
        while True:
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                self.stats.record(endpoint, "error")
                error: ApiError = self.protocol.transport_error(request, exc)
            else:
                self.stats.record(endpoint, response.status_code)
                if response.is_success and stream:
                    return response
                try:
                    await response.aread()
                except httpx.HTTPError as exc:
                    error = self.protocol.transport_error(request, exc)
                else:
                    if response.is_success:
                        return response
                    error = self.protocol.error_for(request, response)
                finally:
                    await response.aclose()
            wait = self._wait_or_raise(request, attempt, started, waited, error)
            await asyncio.sleep(wait)
            attempt, waited = attempt + 1, waited + wait

    async def _json(self, endpoint: str, request: httpx.Request) -> Any:
        return parse_json(await self._send(endpoint, request, stream=False))

    async def list_page(self, page_size: int = 100, start_after_history_item_id: str | None = None, **filters: Any) -> HistoryPage:
        return HistoryPage.from_json(await self._json(*self.protocol.list_request(*self._list_args(page_size, start_after_history_item_id, filters))))

    async def iter_pages(self, page_size: int = 1000, start_after_history_item_id: str | None = None, **filters: Any) -> AsyncIterator[HistoryPage]:
        cursor = start_after_history_item_id
        while True:
            page = await self.list_page(page_size, cursor, **filters)
            yield page
            if not page.has_more or not page.last_history_item_id or page.last_history_item_id == cursor:
                return
            cursor = page.last_history_item_id

    async def iter_items(self, page_size: int = 1000, start_after_history_item_id: str | None = None, **filters: Any) -> AsyncIterator[HistoryItem]:
        async for page in self.iter_pages(page_size, start_after_history_item_id, **filters):
            for item in page.items:
                yield item

    async def get(self, item_id: str) -> HistoryItem:
        return HistoryItem.from_json(await self._json(*self.protocol.get_request(item_id)))

    async def delete(self, item_id: str) -> None:
        await self._json(*self.protocol.delete_request(item_id))

    @asynccontextmanager
    async def audio(self, item_id: str) -> AsyncIterator[AudioStream]:
        async with self._stream(*self.protocol.audio_request(item_id)) as stream:
            yield stream

    @asynccontextmanager
    async def download(self, item_ids: Sequence[str], output_format: str | None = None) -> AsyncIterator[AudioStream]:
        async with self._stream(*self.protocol.download_request(item_ids, output_format)) as stream:
            yield stream

    @asynccontextmanager
    async def _stream(self, endpoint: str, request: httpx.Request) -> AsyncIterator[AudioStream]:
        response = await self._send(endpoint, request, stream=True)
        try:
            yield AudioStream(response, self.stats)
        finally:
            await response.aclose()

    async def check_auth(self) -> None:
        await self.list_page(page_size=1)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHistoryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
