"""Requests in flight per tenant (API key), and the service's concurrency limit with its short queue.

A request takes a slot before anything else happens to it (latency, faults, the endpoint) and
gives it back once its last body byte is written (or its connection is reset), so a streamed
audio body counts for as long as it is being sent. Above the limit a request waits up to
``QUEUE_SECONDS`` for a slot, as the service is said to queue about 50 ms, then is refused.
"""

from __future__ import annotations

import threading
from typing import Any

#: How long a request above the limit waits for a slot before its 429.
QUEUE_SECONDS = 0.05


class Slot:
    """One request's place in its tenant's count; ``release`` is idempotent."""

    def __init__(self, gate: ConcurrencyGate | None, tenant: Any, current: int) -> None:
        self._gate, self._tenant = gate, tenant
        self.current = current  # requests in flight for the tenant, this one included

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._release(self._tenant)


class ConcurrencyGate:
    """Counts requests in flight per tenant; thread-safe. Tenants are any hashable objects."""

    def __init__(self, queue_seconds: float = QUEUE_SECONDS) -> None:
        self.queue_seconds = queue_seconds
        self._cond = threading.Condition()
        self._in_flight: dict[Any, int] = {}  # guarded by _cond; no entry = 0
        self._peak: dict[Any, int] = {}  # guarded by _cond

    def acquire(self, tenant: Any, limit: int) -> Slot | None:
        """A slot (waiting up to ``queue_seconds`` when ``limit`` are taken), or None: refuse it.

        ``limit`` 0 means no limit: the request is only counted."""
        with self._cond:
            if limit > 0 and not self._cond.wait_for(lambda: self._in_flight.get(tenant, 0) < limit, self.queue_seconds):
                return None
            n = self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
            self._peak[tenant] = max(self._peak.get(tenant, 0), n)
            return Slot(self, tenant, n)

    def _release(self, tenant: Any) -> None:
        with self._cond:
            n = self._in_flight.get(tenant, 0) - 1
            if n > 0:
                self._in_flight[tenant] = n
            else:
                self._in_flight.pop(tenant, None)
            self._cond.notify_all()  # waiters of every tenant share the condition

    def in_flight(self, tenant: Any) -> int:
        with self._cond:
            return self._in_flight.get(tenant, 0)

    def peak(self, tenant: Any) -> int:
        """The most requests this tenant ever had in flight at once (since ``reset_peak``)."""
        with self._cond:
            return self._peak.get(tenant, 0)

    def reset_peak(self, tenant: Any) -> None:
        with self._cond:
            self._peak.pop(tenant, None)
