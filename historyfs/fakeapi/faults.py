"""Fault injection for the /v1 API (never for /_fake admin): off by default, reproducible.

Each knob draws from its own ``random.Random`` seeded from the server seed, so the sequence
of decisions for one knob does not depend on the others; all draws happen under one lock.

Knobs (``Faults``): ``latency_ms`` added before answering, ±``jitter`` fraction; ``bandwidth``
bytes/s per response body (paced with sleeps); ``rate_limit`` requests per 1-s window, above
which the answer is 429 with ``Retry-After``; ``fail_rate`` fraction answered 500 or 503;
``truncate_rate`` fraction of 2xx bodies cut short (full headers, part of the body, then the
connection closes); ``outage`` every request's connection is reset without an answer.

Service behaviours (also here, so one PUT /_fake/faults sets everything): ``max_concurrent``
requests in flight per API key, or ``plan`` to take it from PLAN_LIMITS (see concurrency.py);
``chunked_audio`` sends audio and download bodies chunked, without Content-Length; ``head``
answers HEAD on /v1/history/{id}/audio with the audio's headers (405 otherwise, as FastAPI does).
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

#: Requests in flight per account, by plan (the help centre's table; spec section 7).
PLAN_LIMITS = {"free": 2, "starter": 3, "creator": 5, "pro": 10, "scale": 15, "business": 15}


@dataclass(frozen=True, slots=True)
class Faults:
    """What to break, all off by default."""

    latency_ms: float = 0.0
    jitter: float = 0.5
    bandwidth: int = 0  # bytes per second per body; 0 = unlimited
    rate_limit: float = 0.0  # requests per second; 0 = off
    fail_rate: float = 0.0
    truncate_rate: float = 0.0
    outage: bool = False
    max_concurrent: int = 0  # requests in flight per API key; 0 = no limit
    plan: str | None = None  # sets max_concurrent from PLAN_LIMITS
    chunked_audio: bool = False
    head: bool = False

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter", "bandwidth", "rate_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("fail_rate", "truncate_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if isinstance(self.max_concurrent, bool) or not isinstance(self.max_concurrent, int) or self.max_concurrent < 0:
            raise ValueError("max_concurrent must be a whole number >= 0")
        if self.plan is not None and self.plan not in PLAN_LIMITS:
            raise ValueError(f"plan must be one of {', '.join(PLAN_LIMITS)}, not {self.plan!r}")
        if self.plan is not None and self.max_concurrent:
            raise ValueError("give plan or max_concurrent, not both")

    @property
    def concurrency_limit(self) -> int:
        """Requests in flight allowed per API key (0 = no limit)."""
        return PLAN_LIMITS[self.plan] if self.plan is not None else self.max_concurrent


class FaultInjector:
    """Decides, request by request, which fault (if any) applies."""

    def __init__(self, faults: Faults | None = None, seed: int = 1) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self.set(faults or Faults())

    def set(self, faults: Faults) -> None:
        """Replace the knobs and restart every knob's random sequence and the rate window."""
        with self._lock:
            self.faults = faults
            self._rng = {k: random.Random(f"{self._seed}:{k}") for k in ("latency", "fail", "status", "truncate")}
            self._window, self._count = -1, 0

    def delay(self) -> float:
        """Seconds to wait before answering."""
        with self._lock:
            f = self.faults
            if f.latency_ms <= 0:
                return 0.0
            spread = self._rng["latency"].uniform(-f.jitter, f.jitter)
            return max(0.0, f.latency_ms * (1 + spread) / 1000)

    def rate_limited(self) -> int | None:
        """Retry-After seconds if this request exceeds the current 1-s window, else None."""
        with self._lock:
            if self.faults.rate_limit <= 0:
                return None
            now = time.monotonic()
            if math.floor(now) != self._window:
                self._window, self._count = math.floor(now), 0
            self._count += 1
            if self._count <= self.faults.rate_limit:
                return None
            return max(1, math.ceil(self._window + 1 - now))

    def failure(self) -> int | None:
        """500 or 503 for a failing request, else None."""
        with self._lock:
            if self.faults.fail_rate <= 0 or self._rng["fail"].random() >= self.faults.fail_rate:
                return None
            return self._rng["status"].choice((500, 503))

    def truncate_at(self, length: int) -> int | None:
        """Bytes of a ``length``-byte 2xx body to send before closing, or None for all of it."""
        with self._lock:
            f, rng = self.faults, self._rng["truncate"]
            if length <= 0 or f.truncate_rate <= 0 or rng.random() >= f.truncate_rate:
                return None
            return rng.randrange(length)

    @property
    def outage(self) -> bool:
        return self.faults.outage

    @property
    def bandwidth(self) -> int:
        return self.faults.bandwidth
