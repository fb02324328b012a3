"""Keeping the mount's tree fresh: new items, full re-lists, and a bounded refresh on a lookup miss.

Owns the background refresh thread (started in FUSE ``init``, after any fork) and the policy:
every ``refresh`` s the items newer than the newest known are listed; every ``full_resync`` s
everything is re-listed so items deleted elsewhere disappear; a lookup of a missing name asks
for at most one refresh per ``MISS_REFRESH_INTERVAL`` and waits at most ``MISS_REFRESH_WAIT``.
A failed refresh never empties the tree (``Index.replace_all`` removes nothing on error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .errors import ApiError, HistoryFSError

if TYPE_CHECKING:  # imported for types only, so `historyfs export --watch` can share the cursor without the index
    from .client import HistoryClient
    from .index import Index
    from .models import HistoryItem
    from .stats import Counters

log = logging.getLogger(__name__)

#: Shortest wait between two refreshes forced by a lookup of a missing name.
MISS_REFRESH_INTERVAL = 5.0
#: How long such a lookup waits for its refresh (the API may be down: never hang a stat).
MISS_REFRESH_WAIT = 2.0


def newer_items(client: HistoryClient, newest: int) -> Iterator[HistoryItem]:
    """The refresh cursor (also `historyfs export --watch`'s): items dated at or after ``newest``, the
    newest date known, newest first, 1000 a page; one request when nothing is new."""
    return client.iter_items(page_size=1000, date_after_unix=newest, sort_direction="desc")


class Refresher:
    """New items every ``refresh`` s, a full re-list every ``full_resync`` s, and refresh on a lookup miss."""

    def __init__(self, index: Index, client: HistoryClient, counters: Counters, refresh: float,
                 full_resync: float, replay: Callable[[], object] = lambda: None) -> None:
        self.index, self.client, self.counters = index, client, counters
        self.refresh, self.full_every, self._replay = refresh, full_resync, replay
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._last_miss = 0.0  # guarded by _lock
        self._listed = False  # a full listing ran before start (a first mount): no refresh needed at once
        self._thread: threading.Thread | None = None

    def new_items(self) -> int:
        newest = self.index.newest_date()
        if newest is None:
            return self.full()
        with self._lock:
            added = self.index.merge(newer_items(self.client, newest))
        self.counters.add("refreshes")
        self.counters.mark("last_refresh")
        return added

    def full(self) -> int:
        with self._lock:
            added, removed = self.index.replace_all(self.client.iter_items(page_size=1000))
        self.index.set_meta("last_full_resync", str(time.time()))
        self._listed = True
        self.counters.add("refreshes")
        self.counters.mark("last_refresh")
        self.counters.mark("last_full_resync")
        log.info("full resync: %d new, %d removed, %d items", added, removed, len(self.index))
        return added + removed

    def on_miss(self) -> bool:
        """A lookup missed: at most one bounded refresh per interval; True if items were added."""
        with self._lock:
            if time.monotonic() - self._last_miss < MISS_REFRESH_INTERVAL:
                return False
            self._last_miss = time.monotonic()
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(self._safely(self.new_items)), daemon=True)
        t.start()
        t.join(MISS_REFRESH_WAIT)
        return bool(result and result[0] > 0)

    def _safely(self, step: Callable[[], int]) -> int:
        try:
            return step()
        except (ApiError, HistoryFSError) as exc:
            self.counters.add("refresh_failures")
            log.warning("refresh failed (the tree is kept as it is): %s", exc)
        except Exception:
            self.counters.add("refresh_failures")
            log.exception("refresh failed")
        return 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="historyfs-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        self._safely(lambda: int(self._replay() or 0))  # type: ignore[call-overload]
        last_full = float(self.index.get_meta("last_full_resync") or 0)
        if not self._listed:
            self._safely(self.full if self.full_every and time.time() - last_full >= self.full_every else self.new_items)
        last_new, last_full = time.monotonic(), time.monotonic()
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if self.full_every and now - last_full >= self.full_every:
                self._safely(self.full)
                last_full = last_new = now
            elif self.refresh and now - last_new >= self.refresh:
                self._safely(self.new_items)
                last_new = now
