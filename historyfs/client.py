"""History API clients: a sync one on a pooled httpx.Client and an async twin on httpx.AsyncClient.

Both delegate request building and response reading to ``protocol.Protocol``, retry decisions
to ``retry.RetryPolicy``, request slots to the account's ``budget.Budget`` and what happens
between attempts to ``client_base``; only the sending loops differ (blocking vs awaiting). Every
request holds a slot while in flight (an audio stream until its body is read or closed); a
concurrency 429 gives the slot back and waits for another, without spending a retry. Items are
parsed into ``models`` once, here. Audio is streamed, never held whole. The client never caches.
Errors are those of ``errors``; no message carries the API key.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from .audio_stream import CHUNK_SIZE, AudioStream
from .budget import Budget, Slot
from .client_base import CallStats, _Base, _Call
from .config import DEFAULT_API_URL
from .errors import ApiError
from .models import HistoryItem, HistoryPage
from .protocol import HEAD_REFUSED, ListFilters, parse_json
from .retry import RetryPolicy

__all__ = ["CHUNK_SIZE", "AsyncHistoryClient", "AudioStream", "CallStats", "HistoryClient", "ListFilters", "RetryPolicy"]


class HistoryClient(_Base):
    """Blocking client; safe to share between threads (httpx.Client pools connections).

    Parameters:
        api_key: the ElevenLabs key (``config.load_api_key``).
        base_url: scheme://host[:port] of the API, without /v1.
        timeout: seconds for connect/read of one attempt.
        retry: the retry policy (attempts, backoff, deadline).
        transport: an httpx transport (tests pass httpx.MockTransport).
        max_connections: size of the connection pool.
        max_concurrency: never more requests in flight for this account (the lowest cap given wins).
        budget: the concurrency budget (default: the process's one for this URL and key).
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
        max_concurrency: int | None = None,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry, seed, max_concurrency, budget)
        self._http = httpx.Client(**self._http_options(timeout, max_connections, transport))

    # -- sending ---------------------------------------------------------------------
    def _send(self, endpoint: str, request: httpx.Request, *, stream: bool, background: bool = False,
              accept: frozenset[int] = frozenset()) -> tuple[httpx.Response, Slot]:
        """Send with a slot and retries. A 2xx response comes back with its body unread and its slot
        held when ``stream``, else read whole with its slot given back (a body cut short is retried
        like any transport error). Statuses in ``accept`` come back like a 2xx."""
        call = _Call()
        while True:
            try:
                slot = self.budget.acquire(background=background, timeout=self._slot_timeout(call))
            except TimeoutError as exc:
                raise self._no_slot(request, exc) from None
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                slot.release()
                self.stats.record(endpoint, "error")
                error: ApiError = self.protocol.transport_error(request, exc)
            except BaseException:
                slot.release()
                raise
            else:
                self.stats.record(endpoint, response.status_code)
                if stream and response.is_success:
                    self._verdict(request, response, slot, accept)
                    return response, slot
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    error = self.protocol.transport_error(request, exc)
                else:
                    verdict = self._verdict(request, response, slot, accept)
                    if verdict is None:
                        return response, slot
                    error = verdict
                finally:
                    response.close()
                    slot.release()
            time.sleep(self._next_wait(request, call, error))

    def _json(self, endpoint: str, request: httpx.Request, background: bool = False) -> Any:
        return parse_json(self._send(endpoint, request, stream=False, background=background)[0])

    # -- the operations --------------------------------------------------------------
    def list_page(self, page_size: int = 100, start_after_history_item_id: str | None = None, *, background: bool = False,
                  **filters: Any) -> HistoryPage:
        """One page of GET /v1/history (filters: voice_id, model_id, date_before_unix, date_after_unix,
        sort_direction, search, source)."""
        call = self.protocol.list_request(*self._list_args(page_size, start_after_history_item_id, filters))
        return HistoryPage.from_json(self._json(*call, background))

    def iter_pages(self, page_size: int = 1000, start_after_history_item_id: str | None = None, *, background: bool = False,
                   **filters: Any) -> Iterator[HistoryPage]:
        """Every page, following the cursor until ``has_more`` is false."""
        cursor = start_after_history_item_id
        while True:
            page = self.list_page(page_size, cursor, background=background, **filters)
            yield page
            if not page.has_more or not page.last_history_item_id or page.last_history_item_id == cursor:
                return
            cursor = page.last_history_item_id

    def iter_items(self, page_size: int = 1000, start_after_history_item_id: str | None = None, *, background: bool = False,
                   **filters: Any) -> Iterator[HistoryItem]:
        """Every matching item, newest first unless sort_direction="asc"."""
        for page in self.iter_pages(page_size, start_after_history_item_id, background=background, **filters):
            yield from page.items

    def get(self, item_id: str, *, background: bool = False) -> HistoryItem:
        return HistoryItem.from_json(self._json(*self.protocol.get_request(item_id), background))

    def delete(self, item_id: str, *, background: bool = False) -> None:
        self._json(*self.protocol.delete_request(item_id), background)

    @contextmanager
    def audio(self, item_id: str, *, background: bool = False) -> Iterator[AudioStream]:
        """GET /v1/history/{id}/audio as a stream (holding a request slot until read or closed)."""
        with self._stream(*self.protocol.audio_request(item_id), background) as stream:
            yield stream

    def audio_length(self, item_id: str, *, background: bool = False) -> int | None:
        """The audio's byte length from one HEAD request, without its body; None when the API
        offers no such answer (405/501, or no Content-Length), remembered for this client's life."""
        if not self._head_offered:
            return None
        endpoint, request = self.protocol.audio_head_request(item_id)
        response, _ = self._send(endpoint, request, stream=False, background=background, accept=HEAD_REFUSED)
        return self._length_from(response)

    @contextmanager
    def download(self, item_ids: Sequence[str], output_format: str | None = None, *, background: bool = False) -> Iterator[AudioStream]:
        """POST /v1/history/download: one id gives its audio, several a zip; output_format "wav" transcodes."""
        with self._stream(*self.protocol.download_request(item_ids, output_format), background) as stream:
            yield stream

    @contextmanager
    def _stream(self, endpoint: str, request: httpx.Request, background: bool) -> Iterator[AudioStream]:
        response, slot = self._send(endpoint, request, stream=True, background=background)
        try:
            yield AudioStream(response, self.stats, slot.release)
        finally:
            response.close()
            slot.release()

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
        max_concurrency: int | None = None,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(api_key, base_url, retry, seed, max_concurrency, budget)
        self._http = httpx.AsyncClient(**self._http_options(timeout, max_connections, transport))

    async def _send(self, endpoint: str, request: httpx.Request, *, stream: bool, background: bool = False,
                    accept: frozenset[int] = frozenset()) -> tuple[httpx.Response, Slot]:
        import asyncio  # here, not at the top: the sync client (mount, export) never pays for it

        call = _Call()
        while True:
            try:
                slot = await self.budget.acquire_async(background=background, timeout=self._slot_timeout(call))
            except TimeoutError as exc:
                raise self._no_slot(request, exc) from None
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                slot.release()
                self.stats.record(endpoint, "error")
                error: ApiError = self.protocol.transport_error(request, exc)
            except BaseException:
                slot.release()
                raise
            else:
                self.stats.record(endpoint, response.status_code)
                if stream and response.is_success:
                    self._verdict(request, response, slot, accept)
                    return response, slot
                try:
                    await response.aread()
                except httpx.HTTPError as exc:
                    error = self.protocol.transport_error(request, exc)
                else:
                    verdict = self._verdict(request, response, slot, accept)
                    if verdict is None:
                        return response, slot
                    error = verdict
                finally:
                    await response.aclose()
                    slot.release()
            await asyncio.sleep(self._next_wait(request, call, error))

    async def _json(self, endpoint: str, request: httpx.Request, background: bool = False) -> Any:
        return parse_json((await self._send(endpoint, request, stream=False, background=background))[0])

    async def list_page(self, page_size: int = 100, start_after_history_item_id: str | None = None, *, background: bool = False,
                        **filters: Any) -> HistoryPage:
        call = self.protocol.list_request(*self._list_args(page_size, start_after_history_item_id, filters))
        return HistoryPage.from_json(await self._json(*call, background))

    async def iter_pages(self, page_size: int = 1000, start_after_history_item_id: str | None = None, *, background: bool = False,
                         **filters: Any) -> AsyncIterator[HistoryPage]:
        cursor = start_after_history_item_id
        while True:
            page = await self.list_page(page_size, cursor, background=background, **filters)
            yield page
            if not page.has_more or not page.last_history_item_id or page.last_history_item_id == cursor:
                return
            cursor = page.last_history_item_id

    async def iter_items(self, page_size: int = 1000, start_after_history_item_id: str | None = None, *, background: bool = False,
                         **filters: Any) -> AsyncIterator[HistoryItem]:
        async for page in self.iter_pages(page_size, start_after_history_item_id, background=background, **filters):
            for item in page.items:
                yield item

    async def get(self, item_id: str, *, background: bool = False) -> HistoryItem:
        return HistoryItem.from_json(await self._json(*self.protocol.get_request(item_id), background))

    async def delete(self, item_id: str, *, background: bool = False) -> None:
        await self._json(*self.protocol.delete_request(item_id), background)

    @asynccontextmanager
    async def audio(self, item_id: str, *, background: bool = False) -> AsyncIterator[AudioStream]:
        async with self._stream(*self.protocol.audio_request(item_id), background) as stream:
            yield stream

    async def audio_length(self, item_id: str, *, background: bool = False) -> int | None:
        """See HistoryClient.audio_length."""
        if not self._head_offered:
            return None
        endpoint, request = self.protocol.audio_head_request(item_id)
        response, _ = await self._send(endpoint, request, stream=False, background=background, accept=HEAD_REFUSED)
        return self._length_from(response)

    @asynccontextmanager
    async def download(self, item_ids: Sequence[str], output_format: str | None = None, *, background: bool = False) -> AsyncIterator[AudioStream]:
        async with self._stream(*self.protocol.download_request(item_ids, output_format), background) as stream:
            yield stream

    @asynccontextmanager
    async def _stream(self, endpoint: str, request: httpx.Request, background: bool) -> AsyncIterator[AudioStream]:
        response, slot = await self._send(endpoint, request, stream=True, background=background)
        try:
            yield AudioStream(response, self.stats, slot.release)
        finally:
            await response.aclose()
            slot.release()

    async def check_auth(self) -> None:
        await self.list_page(page_size=1)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHistoryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
