"""Work done ahead of the reader: sequential read-ahead across files, and sizes learned per folder.

``ReadAhead`` spots sequential readers (each open is the successor of a previous one: `cp -r`,
rsync, tar) and prefetches the next items. ``FolderScout`` makes the first stat of a clip of
unknown size in a folder start learning the sizes of the folder's other unknown clips at once,
so `ls -l`, tar, rclone and file managers pay about one round of downloads per folder, not one
per file in series. Both are policies over callables; bounded in-memory state (cachetools).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence

from cachetools import LRUCache, TTLCache

from .download import Fetch

#: Furthest read-ahead (items queued ahead of a sequential reader); the window doubles from 2.
MAX_WINDOW = 16
#: Sequential readers tracked at once (e.g. several `cp -r` in parallel).
MAX_STREAMS = 16
#: Folders remembered as scouted; a folder is scouted again after SCOUT_TTL seconds (new clips).
MAX_SCOUTED = 4096
SCOUT_TTL = 60.0


class ReadAhead:
    """Prefetches ahead of sequential readers.

    A reader's stream is known by the items it is expected to open next (its window: the items
    that follow the last one it opened, in the order a recursive walk visits them). Opening any
    of them doubles the window (2, 4, ... MAX_WINDOW) and queues that many successors; opening
    anything else starts a new stream with no prefetch, so random access costs nothing extra.
    Any item of the window counts, not only the next one: GNU `cp -r` opens a folder's files in
    inode order, which is not name order.
    """

    def __init__(self, prefetch: Callable[[Fetch], None]) -> None:
        self._prefetch = prefetch
        self._lock = threading.Lock()
        #: expected key -> the window of the stream expecting it; guarded by _lock
        self._expected: LRUCache[str, int] = LRUCache(MAX_STREAMS * MAX_WINDOW)

    def opened(self, key: str, successors: Callable[[int], Sequence[Fetch]]) -> None:
        """``key`` was opened; ``successors(n)`` lists up to n items that follow it."""
        with self._lock:
            previous = self._expected.pop(key, None)
        window = 0 if previous is None else min(max(2, previous * 2), MAX_WINDOW)
        following = successors(max(window, 2))
        with self._lock:
            for job in following:
                self._expected[job.key] = window
        for job in following[:window]:
            self._prefetch(job)


class FolderScout:
    """Starts learning a folder's unknown sizes once per folder (again after ``SCOUT_TTL`` s)."""

    def __init__(self, learn_later: Callable[[Fetch], None]) -> None:
        self._learn_later = learn_later
        self._lock = threading.Lock()
        self._scouted: TTLCache[Hashable, bool] = TTLCache(MAX_SCOUTED, SCOUT_TTL)  # guarded by _lock

    def first_unknown(self, folder: Hashable, unknown: Callable[[], Sequence[Fetch]]) -> None:
        """A stat met an unknown size in ``folder``: queue ``unknown()`` (the folder's unknown clips, in name order)."""
        with self._lock:
            if folder in self._scouted:
                return
            self._scouted[folder] = True
        for job in unknown():
            self._learn_later(job)
