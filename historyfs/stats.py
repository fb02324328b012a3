"""The mount's live counters and the ``.historyfs/stats.json`` document built from them.

Owns: thread-safe counters the fetcher, the delete journal and the refresher bump (bytes
fetched, cache hits and misses, downloads in flight, last refresh...). It only reads the other
components (client stats, cache stats, index size) when a snapshot is asked for.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any


class Counters:
    """Named integer counters and timestamps; every method is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}  # guarded by _lock
        self._times: dict[str, float] = {}  # guarded by _lock

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def mark(self, name: str, when: float | None = None) -> None:
        """Record that ``name`` happened now (wall clock)."""
        with self._lock:
            self._times[name] = time.time() if when is None else when

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self._counts), "times": dict(self._times)}


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def stats_document(counters: Counters, sources: dict[str, Callable[[], Any]]) -> bytes:
    """stats.json: the counters plus whatever each named source reports (errors reported, not raised)."""
    snap = counters.snapshot()
    counts, times = snap["counts"], snap["times"]
    doc: dict[str, Any] = {
        "bytes_fetched": counts.get("bytes_fetched", 0),
        "cache_hits": counts.get("cache_hits", 0),
        "cache_misses": counts.get("cache_misses", 0),
        "downloads_failed": counts.get("downloads_failed", 0),
        "prefetches": counts.get("prefetches", 0),
        "size_probes": counts.get("size_probes", 0),
        "deletes_done": counts.get("deletes_done", 0),
        "refreshes": counts.get("refreshes", 0),
        "refresh_failures": counts.get("refresh_failures", 0),
        "last_refresh": _iso(times.get("last_refresh")),
        "last_full_resync": _iso(times.get("last_full_resync")),
    }
    for name, source in sources.items():
        try:
            doc[name] = source()
        except Exception as exc:  # a stats file must always be readable
            doc[name] = {"error": exc.__class__.__name__}
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()
