"""One concurrency budget per API account and process: how many requests may be in flight, and who goes next.

Owns the limit and the queue of requests waiting for a slot; knows no HTTP (the client reports
what each response said). Every client of the same base URL and key in a process shares one
``Budget`` (``for_account``), so mount downloads, read-ahead, refresh and export jobs together
stay within the account's limit.

The limit starts at ``DEFAULT_LIMIT``. A ``maximum-concurrent-requests`` header sets it to the
account's limit at once. Without one it grows by one slot per limit's worth of requests that
found the budget full (additive increase), up to ``MAX_LIMIT``. A concurrency 429 of a request
that was the k-th in flight brings it down to k - 1 at most (the account refused k), once per
round: 429s of requests sent before the last change do not lower it again. That is AIMD with a
better-informed decrease: a halving would throw away slots the account has. After a 429, growth
back to the refused level is ``PROBE_PATIENCE`` times slower, so a client alone on an account
whose headers say nothing meets about one 429 per ``PROBE_PATIENCE`` x limit requests, while a
limit freed by another program sharing the key is still found again. The limit never exceeds
the header's value nor the user's cap. Freed slots go to interactive waiters (a reader is
blocked) before background ones (read-ahead, size learning, refresh), first come first served
within each.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Slots before anything is learned. Plans allow 2 (Free) to 15 (Scale); 4 keeps a first burst
#: on a Free account to two refused requests (the server queues 50 ms first, so often none),
#: and a Creator or bigger account near its limit until the first response's header arrives.
DEFAULT_LIMIT = 4
#: Without a header, the limit never grows past this (the client's default connection pool).
MAX_LIMIT = 32
#: How many times slower the limit grows back to a level the account refused.
PROBE_PATIENCE = 50


class Limit:
    """The AIMD policy alone: pure, no locks, no clock."""

    def __init__(self, start: int = DEFAULT_LIMIT, cap: int | None = None) -> None:
        self.value = start
        self.cap = cap
        self.account: int | None = None  # the last maximum-concurrent-requests seen
        self.refused: int | None = None  # the last level a concurrency 429 came at, until probed past
        self.epoch = 0  # bumped on every change that 429s of older requests must not repeat
        self._credit = 0  # saturated successes since the last change
        self._shrunk = False

    @property
    def ceiling(self) -> int:
        top = self.account or MAX_LIMIT
        return top if self.cap is None else min(top, self.cap)

    @property
    def slots(self) -> int:
        """Requests allowed in flight now."""
        return max(1, min(self.value, self.ceiling))

    @property
    def source(self) -> str:
        return "header" if self.account else "429s" if self._shrunk else "default"

    def learn_account(self, value: int) -> None:
        """The account's limit as a header gave it (ignored unless positive)."""
        if value > 0 and value != self.account:
            self.account, self.value, self._credit, self.refused = value, value, 0, None
            self.epoch += 1

    def grow(self) -> None:
        """A request that found every slot taken got its answer: one more slot per limit's worth of
        those, or per PROBE_PATIENCE limits' worth towards a level refused before."""
        self._credit += 1
        near_refused = self.refused is not None and self.value + 1 >= self.refused
        if self._credit < self.value * (PROBE_PATIENCE if near_refused else 1):
            return
        self._credit = 0
        if self.refused is not None and self.value >= self.refused:
            self.refused = None  # a whole round at the refused level without a 429: it is free now
        if self.value < self.ceiling:
            self.value += 1

    def shrink(self, epoch: int, level: int) -> None:
        """A concurrency 429 for a request sent in ``epoch`` as the ``level``-th in flight."""
        if epoch == self.epoch:
            self.value = max(1, min(self.value, self.ceiling, level - 1))
            self.refused, self._credit, self._shrunk = level, 0, True
            self.epoch += 1


class Slot:
    """One request's place in the budget. ``release`` is idempotent."""

    __slots__ = ("_budget", "epoch", "level", "saturated")

    def __init__(self, budget: Budget, epoch: int, level: int, saturated: bool) -> None:
        self._budget: Budget | None = budget
        self.epoch = epoch
        self.level = level  # requests in flight with this one, when it was given
        self.saturated = saturated  # the budget was full when this slot was given

    def answered(self, account_limit: str | None) -> None:
        """The request got an answer other than a concurrency 429 (``account_limit``: the header)."""
        if self._budget is not None:
            self._budget._answered(self, account_limit)

    def concurrency_limited(self, account_limit: str | None) -> None:
        if self._budget is not None:
            self._budget._limited(self, account_limit)

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._release()


class _Ticket:
    """A request waiting for a slot; ``wake`` returns False if its waiter is gone."""

    __slots__ = ("background", "wake", "slot")

    def __init__(self, background: bool, wake: Callable[[], bool]) -> None:
        self.background, self.wake = background, wake
        self.slot: Slot | None = None


class Budget:
    """Slots for requests in flight to one account; thread-safe, usable from threads and event loops."""

    def __init__(self, start: int = DEFAULT_LIMIT, cap: int | None = None) -> None:
        self._lock = threading.Lock()
        self._limit = Limit(start, cap)  # guarded by _lock, like everything below
        self._in_flight = 0
        self._peak = 0
        self._queues: tuple[deque[_Ticket], deque[_Ticket]] = (deque(), deque())  # interactive, background
        self._counts = {"concurrency_429s": 0, "rate_429s": 0}

    # -- taking a slot --------------------------------------------------------------------
    def acquire(self, *, background: bool = False, timeout: float | None = None) -> Slot:
        """A slot, waiting for one up to ``timeout`` seconds (TimeoutError after that)."""
        event = threading.Event()
        ticket = self._enter(background, lambda: event.set() or True)
        if ticket.slot is None:
            try:
                given = event.wait(timeout)
            except BaseException:
                self._abandon(ticket)
                raise
            if not given and self._leave(ticket) is None:
                raise TimeoutError(self._timeout_message(timeout))
        assert ticket.slot is not None
        return ticket.slot

    async def acquire_async(self, *, background: bool = False, timeout: float | None = None) -> Slot:
        """``acquire`` for a coroutine: waits without blocking the event loop."""
        import asyncio  # here: the sync clients never pay for it

        loop = asyncio.get_running_loop()
        given: asyncio.Future[None] = loop.create_future()
        ticket = self._enter(background, lambda: _resolve_threadsafe(loop, given))
        if ticket.slot is None:
            try:
                await asyncio.wait_for(given, timeout)
            except TimeoutError:
                if self._leave(ticket) is None:
                    raise TimeoutError(self._timeout_message(timeout)) from None
            except BaseException:
                self._abandon(ticket)
                raise
        assert ticket.slot is not None
        return ticket.slot

    def _enter(self, background: bool, wake: Callable[[], bool]) -> _Ticket:
        ticket = _Ticket(background, wake)
        with self._lock:
            ahead = self._queues[0] if not background else self._queues[0] or self._queues[1]
            if not ahead and self._in_flight < self._limit.slots:
                self._give(ticket, waited=False)
            else:
                self._queues[int(background)].append(ticket)
        return ticket

    def _leave(self, ticket: _Ticket) -> Slot | None:
        """Withdraw a waiter; the slot it was given meanwhile, if any (the caller releases it)."""
        with self._lock:
            if ticket.slot is None:
                self._queues[int(ticket.background)].remove(ticket)
            return ticket.slot

    def _abandon(self, ticket: _Ticket) -> None:
        """Withdraw a waiter that will not use its slot (interrupted, cancelled)."""
        slot = self._leave(ticket)
        if slot is not None:
            slot.release()

    def _give(self, ticket: _Ticket, *, waited: bool) -> None:
        """Under the lock: count the slot in and hand it to ``ticket``."""
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        saturated = waited or self._in_flight >= self._limit.slots
        ticket.slot = Slot(self, self._limit.epoch, self._in_flight, saturated)

    def _dispatch(self) -> None:
        """Under the lock: hand free slots to waiters, interactive first."""
        while self._in_flight < self._limit.slots and (self._queues[0] or self._queues[1]):
            ticket = (self._queues[0] or self._queues[1]).popleft()
            self._give(ticket, waited=True)
            if not ticket.wake():  # its event loop is gone: take the slot back
                self._in_flight -= 1
                ticket.slot = None

    def _timeout_message(self, timeout: float | None) -> str:
        with self._lock:
            return f"no request slot free within {timeout:.1f} s ({self._in_flight} in flight, limit {self._limit.slots})"

    # -- what responses teach ---------------------------------------------------------------
    def _answered(self, slot: Slot, account_limit: str | None) -> None:
        with self._lock:
            self._learn(account_limit)
            if slot.saturated:
                self._limit.grow()
            self._dispatch()

    def _limited(self, slot: Slot, account_limit: str | None) -> None:
        with self._lock:
            self._counts["concurrency_429s"] += 1
            self._learn(account_limit)
            self._limit.shrink(slot.epoch, slot.level)

    def _learn(self, account_limit: str | None) -> None:
        if account_limit and account_limit.strip().isdigit():
            self._limit.learn_account(int(account_limit))

    def rate_limited(self) -> None:
        """Count a plain rate-limit 429 (those are retried by the RetryPolicy, not here)."""
        with self._lock:
            self._counts["rate_429s"] += 1

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._dispatch()

    # -- settings and reports ---------------------------------------------------------------
    def apply_cap(self, cap: int) -> None:
        """Never more than ``cap`` in flight; of several caps for one account the lowest wins."""
        if cap < 1:
            raise ValueError("the concurrency cap must be at least 1")
        with self._lock:
            self._limit.cap = cap if self._limit.cap is None else min(cap, self._limit.cap)

    def snapshot(self) -> dict[str, Any]:
        """The limit in force and how it was learned, slots in use and waiting, 429s by kind."""
        with self._lock:
            lim = self._limit
            return {"limit": lim.slots, "cap": lim.cap, "account_limit": lim.account, "learned_from": lim.source,
                    "in_flight": self._in_flight, "peak_in_flight": self._peak,
                    "waiting": len(self._queues[0]) + len(self._queues[1]), **self._counts}


def _resolve_threadsafe(loop: Any, future: Any) -> bool:
    """Wake a coroutine waiting on ``future`` from any thread; False if its loop is closed."""
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:
        return False
    return True


_registry: dict[str, Budget] = {}
_registry_lock = threading.Lock()


def for_account(base_url: str, api_key: str) -> Budget:
    """The process's budget for this account, keyed by a digest of (URL, key): the key is never stored."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()
    with _registry_lock:
        budget = _registry.get(digest)
        if budget is None:
            budget = _registry[digest] = Budget()
        return budget
