"""Thread-safe request counters (per server and per tenant) and a bounded request log.

The log keeps method, path (with query), endpoint, status and the tenant's *name*; never a
header, so never an API key.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

LOG_LIMIT = 10_000


class Stats:
    """Requests by endpoint and status, bytes of bodies sent, truncations, resets and 429s by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._by_endpoint: dict[str, dict[str, int]] = {}
            self._counters = {"total": 0, "bytes_sent": 0, "truncated": 0, "resets": 0,
                              "concurrency_limited": 0, "rate_limited": 0}
            self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)

    def record(self, entry: dict[str, Any]) -> None:
        """Count one request as it is answered (or reset), before its body goes out, so that a client
        that has the answer finds it counted; ``entry`` needs "endpoint" and "status"."""
        with self._lock:
            statuses = self._by_endpoint.setdefault(entry["endpoint"], {})
            key = str(entry["status"])
            statuses[key] = statuses.get(key, 0) + 1
            self._counters["total"] += 1
            self._counters["resets"] += int(entry["status"] == "reset")
            if entry.get("limited"):
                self._counters[f"{entry['limited']}_limited"] += 1
            self.log.append(dict(entry))

    def record_body(self, sent: int, truncated: bool) -> None:
        """Count what went out of a recorded request's body."""
        with self._lock:
            self._counters["bytes_sent"] += sent
            self._counters["truncated"] += int(truncated)

    def snapshot(self) -> dict[str, Any]:
        """{"requests": {"list": {"200": 3}, ...}, "total", "bytes_sent", "truncated", "resets",
        "concurrency_limited", "rate_limited": n} (the last two count the two kinds of 429)."""
        with self._lock:
            return {"requests": {k: dict(v) for k, v in self._by_endpoint.items()}, **self._counters}

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self.log]
