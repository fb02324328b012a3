"""What the sync and async History API clients share: call bookkeeping, statistics, and the rules
applied between attempts (what a response teaches the concurrency budget, when to go again).

No I/O here: the clients in ``client`` send, sleep and await; this module decides.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import budget as budgets
from .budget import Budget, Slot
from .errors import ApiError, AuthError, OutcomeUnknown, RateLimited, Unavailable
from .protocol import ACCOUNT_LIMIT_HEADER, HEAD_REFUSED, ListFilters, Protocol, body_length, is_concurrency_limit
from .retry import RetryPolicy, is_retryable_status

#: After a concurrency 429, a pause of up to CROWDED_PAUSE * 2**n (n = such 429s of this call, at
#: most CROWDED_PAUSE_MAX) before the request queues for a slot again: when other programs hold
#: the account's slots, our request would otherwise come back every 50 ms.
CROWDED_PAUSE = 0.01
CROWDED_PAUSE_MAX = 1.0


class CallStats:
    """Thread-safe counters of API calls by endpoint and outcome, bytes of audio received, and the
    state of the account's concurrency budget (shared with every client of the same key)."""

    def __init__(self, budget: Budget | None = None) -> None:
        self._lock = threading.Lock()
        self._calls: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._bytes = 0
        self._budget = budget

    def record(self, endpoint: str, outcome: int | str) -> None:
        with self._lock:
            self._calls[endpoint][str(outcome)] += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            snap: dict[str, Any] = {"calls": {k: dict(v) for k, v in self._calls.items()}, "bytes_received": self._bytes}
        if self._budget is not None:
            snap["concurrency"] = self._budget.snapshot()
        return snap


@dataclass(slots=True)
class _Call:
    """One call's bookkeeping across its attempts."""

    started: float = field(default_factory=time.monotonic)
    attempt: int = 0  # error retries spent
    waited: float = 0.0  # seconds of planned waits
    crowded: int = 0  # concurrency 429s met

    def elapsed(self) -> float:
        """Time spent: the clock, or the waits planned when those were cut short (tests)."""
        return max(time.monotonic() - self.started, self.waited)


class _Base:
    """What the sync and async clients share: configuration, protocol, budget, stats, retry bookkeeping."""

    def __init__(self, api_key: str, base_url: str, retry: RetryPolicy | None, seed: int | None,
                 max_concurrency: int | None, budget: Budget | None) -> None:
        if not api_key:
            raise AuthError("no API key given")
        self.protocol = Protocol(api_key, base_url)
        self.base_url = self.protocol.base_url
        self.retry = retry or RetryPolicy()
        self.budget = budget or budgets.for_account(self.base_url, api_key)
        if max_concurrency is not None:
            self.budget.apply_cap(max_concurrency)
        self.stats = CallStats(self.budget)
        self._rng = random.Random(seed)
        self._head_offered = True  # until the API says otherwise (see audio_length)

    def _slot_timeout(self, call: _Call) -> float:
        return max(0.0, self.retry.deadline - call.elapsed())

    @staticmethod
    def _no_slot(request: httpx.Request, exc: TimeoutError) -> Unavailable:
        return Unavailable(f"{request.method} {request.url.path}: {exc}")

    def _verdict(self, request: httpx.Request, response: httpx.Response, slot: Slot, accept: frozenset[int]) -> ApiError | None:
        """None for a usable answer (2xx or ``accept``), else its error; tells the budget what it saw."""
        limit_header = response.headers.get(ACCOUNT_LIMIT_HEADER)
        if response.is_success or response.status_code in accept:
            slot.answered(limit_header)
            return None
        error = self.protocol.error_for(request, response)
        if is_concurrency_limit(error):
            slot.concurrency_limited(limit_header)
            return error
        slot.answered(limit_header)
        if isinstance(error, RateLimited):
            self.budget.rate_limited()
        return error

    def _next_wait(self, request: httpx.Request, call: _Call, error: ApiError) -> float:
        """Seconds to pause before going again (raises when the call is over).

        A concurrency 429 spends no retry: the request only needs a slot, within the deadline."""
        if is_concurrency_limit(error):
            call.crowded += 1
            pause = self._rng.uniform(0, min(CROWDED_PAUSE_MAX, CROWDED_PAUSE * 2**call.crowded))
            if call.elapsed() + pause >= self.retry.deadline:
                error.args = (f"{error.message} (still over the concurrency limit after {call.crowded} tries)",)
                raise error
        else:
            pause = self._wait_or_raise(request, call, error)
            call.attempt += 1
        call.waited += pause
        return pause

    def _wait_or_raise(self, request: httpx.Request, call: _Call, error: ApiError) -> float:
        """The wait before retrying after ``error``, or raise it when retries are spent.

        Time spent (``call.elapsed``) counts the waits already planned as well as the clock, so the deadline
        holds even where sleeping is cut short (tests) or the clock is coarse. A DELETE whose
        answer was lost is not repeated: the caller decides (it may have taken effect)."""
        retryable = isinstance(error, Unavailable) and (error.status is None or is_retryable_status(error.status))
        if isinstance(error, OutcomeUnknown) and request.method == "DELETE":
            retryable = False
        wait = self.retry.next_wait(call.attempt, call.elapsed(), getattr(error, "retry_after", None), self._rng) if retryable else None
        if wait is None:
            if retryable and call.attempt > 0:
                error.args = (f"{error.message} (gave up after {call.attempt + 1} attempts)",)
            raise error
        return wait

    def _length_from(self, response: httpx.Response) -> int | None:
        """The audio length a HEAD answer gives; None, remembered, when the API offers none."""
        length = body_length(response) if response.is_success else None
        if length is None and (response.is_success or response.status_code in HEAD_REFUSED):
            self._head_offered = False
        return length

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
