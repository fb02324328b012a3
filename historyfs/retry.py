"""When to retry an API call and how long to wait: pure policy, no I/O, no sleeping.

Retried: 408, 409, 429 and every 5xx, connection errors and timeouts (the SDK retries
none of the latter; a mount must). A server's Retry-After (seconds or HTTP date) is
honoured up to ``retry_after_cap``; otherwise the wait is exponential with full jitter
(``base_delay * 2**attempt``, capped at ``max_delay``). Nothing is retried past
``deadline`` seconds from the first attempt, so a caller never waits longer than that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

RETRY_STATUSES = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN -> None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the client tries. The defaults suit an interactive mount."""

    max_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0
    retry_after_cap: float = 30.0
    deadline: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None and retry_after > 0:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def next_wait(self, attempt: int, elapsed: float, retry_after: float | None, rng: random.Random | None = None) -> float | None:
        """The wait before another attempt, or None when attempts or the deadline are spent."""
        if attempt + 1 >= self.max_attempts:
            return None
        wait = self.delay(attempt, retry_after, rng)
        if elapsed + wait >= self.deadline:
            return None
        return wait


NO_RETRY = RetryPolicy(max_attempts=1)
