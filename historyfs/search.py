"""search/<words>/: one folder per query, answered by the API's own search (GET /v1/history?search=...).

Owns the query policy: which names are queries (``layout.search_query``: names file managers
and shells probe are not), one API search per query per ``RESULTS_TTL`` seconds (a
``cachetools.TTLCache``; lookups of a query whose search is running wait for that search, so a
file manager's burst of lookups costs one call), the queries `ls search/` lists (the last
``QUERIES_KEPT``, for ``QUERIES_TTL`` s), and the counters stats.json reports. Results are item
ids; their folder is built from the index's records, so a clip is the same file (inode, cache,
download) as in every other view, and rebuilt when the index changes. What a query's folder
showed and no longer shows (results expired, forgotten or changed) is told to the kernel
(``tell``) before the answer that learned it, and expiry also by a sweep every
``SWEEP_INTERVAL`` s (``start``): with libfuse >= 3.16 the kernel keeps a folder's listing until
told, so no lookup may come to notice it. Never touches FUSE.
Concurrency: ``_lock`` guards the caches and the flights; API calls run outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from .index import Index
from .layout import KINDS, SEARCH, Placement, file_name, search_query
from .models import HistoryItem
from .stats import Counters
from .tree import Folder, flat_folder

log = logging.getLogger(__name__)

#: How long a search's results are reused: long enough for a file manager's or a shell's burst of
#: lookups and listings of one folder, short enough that a clip generated since shows up.
RESULTS_TTL = 60.0
#: Queries whose results are held at once (the least recently used go first).
RESULTS_KEPT = 64
#: `ls search/` lists the queries made in the last QUERIES_TTL seconds (at most QUERIES_KEPT).
QUERIES_TTL = 3600.0
QUERIES_KEPT = 100
#: Items per API call: the API's maximum, so a search with n results costs ceil(n / 1000) calls.
PAGE_SIZE = 1000
#: A search folder shows at most this many of the newest matches (ten calls).
MAX_RESULTS = 10_000
#: Seconds between two sweeps for expired results (the kernel is told within this after expiry).
SWEEP_INTERVAL = 1.0


class Lister(Protocol):
    """What a search needs of the API client (``HistoryClient.iter_items``)."""

    def iter_items(self, page_size: int = ..., start_after_history_item_id: str | None = ..., *,
                   background: bool = ..., **filters: Any) -> Iterator[HistoryItem]: ...


@dataclass(slots=True)
class _Results:
    """One search's answer: item ids newest first, when it ran, and its folder as of an index generation."""

    ids: tuple[str, ...]
    ran: float
    generation: int
    folder: Folder


class _Flight:
    """A search in progress; lookups of the same query wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: _Results | None = None
        self.error: BaseException | None = None

    def wait(self) -> _Results:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Searches:
    """The search/ view of one mount: ``root()`` lists, ``results(name)`` answers search/<name>."""

    def __init__(self, client: Lister, index: Index, *, ttl: float = RESULTS_TTL,
                 refresh: Callable[[], bool] | None = None, timer: Callable[[], float] = time.monotonic) -> None:
        self._client, self._index, self._refresh = client, index, refresh
        self.ttl = ttl
        #: Told the paths whose kernel-cached entries are stale (HistoryFS sets it to tell_kernel).
        self.tell: Callable[[Iterable[str]], None] = lambda paths: None
        self.counters = Counters()
        self._lock = threading.Lock()
        self._results: TTLCache[str, _Results] = TTLCache(RESULTS_KEPT, ttl, timer)  # guarded by _lock
        self._queries: TTLCache[str, float] = TTLCache(QUERIES_KEPT, QUERIES_TTL, timer)  # name -> when it ran; guarded
        self._shown: dict[str, Folder] = {}  # the folder each query last showed; guarded by _lock
        self._flights: dict[str, _Flight] = {}  # guarded by _lock
        self._stop = threading.Event()

    # -- lookups ---------------------------------------------------------------------------
    def results(self, name: str) -> Folder | None:
        """The folder search/<name>, searching unless fresh results are held; None if ``name`` is no query."""
        if search_query(name) is None:
            self.counters.add("probes_ignored")
            return None
        self.sweep()
        with self._lock:
            entry = self._results.get(name)
            flight = self._flights.get(name) if entry is None else None
            starts = entry is None and flight is None
            if starts:
                flight = self._flights[name] = _Flight()
        if entry is None:  # search, or wait for the search under way
            assert flight is not None
            entry = self._run(name, flight) if starts else flight.wait()
        if not starts:
            self.counters.add("cache_hits")
        return self._current(name, entry)

    def root(self) -> Folder:
        """search/ itself: the queries made recently (held results, or an empty folder dated when it ran)."""
        self.sweep()
        folder = Folder()
        with self._lock:
            for name, ran in self._queries.items():
                entry = self._results.get(name)
                folder.dirs[name] = entry.folder if entry is not None else flat_folder((), int(ran))
        folder.mtime = self._index.root.mtime
        return folder

    def start(self) -> None:
        """Sweep for expired results in the background (the mount calls it in FUSE init)."""
        threading.Thread(target=self._sweep_loop, name="historyfs-search", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_INTERVAL):
            try:
                self.sweep()
            except Exception:  # telling the kernel is best effort; the next sweep tries again
                log.exception("search sweep failed")

    def forget(self, name: str) -> None:
        """`rmdir search/<name>`: drop the query and its results (nothing is deleted anywhere)."""
        with self._lock:
            self._queries.pop(name, None)
            self._results.pop(name, None)
            shown = self._shown.pop(name, None)
        self.tell([f"/{SEARCH}", *_paths(name, shown)])

    # -- searching ---------------------------------------------------------------------------
    def _run(self, name: str, flight: _Flight) -> _Results:
        self.counters.add("cache_misses")
        try:
            entry = self._search(name)
        except BaseException as exc:
            self.counters.add("failures")
            flight.error = exc
            raise
        else:
            flight.result = entry
            with self._lock:
                self._results[name] = entry
                self._queries[name] = entry.ran
        finally:
            with self._lock:
                self._flights.pop(name, None)
            flight.done.set()
        self.tell([f"/{SEARCH}"])
        return entry

    def _search(self, name: str) -> _Results:
        """One API search (paged), newest first; items the index does not know yet trigger its refresh."""
        ids: list[str] = []
        for item in self._client.iter_items(page_size=PAGE_SIZE, search=name):
            ids.append(item.history_item_id)
            if len(ids) >= MAX_RESULTS:
                break
        self.counters.add("results", len(ids))
        generation, ran = self._index.generation, time.time()
        folder = self._folder(ids, ran)
        if len(folder.files) < len(ids) and self._refresh is not None and self._refresh():
            generation = self._index.generation
            folder = self._folder(ids, ran)
        return _Results(tuple(ids), ran, generation, folder)

    def _folder(self, ids: Iterable[str], ran: float) -> Folder:
        """The folder of these results: the index's records (placed ones: a refresh may be placing new ones)."""
        slims = (self._index.item(i) for i in ids)
        return flat_folder((s for s in slims if s is not None and s.stem), int(ran))

    def _current(self, name: str, entry: _Results) -> Folder:
        """The entry's folder, rebuilt if the index changed since; the kernel is told what it no longer shows."""
        generation = self._index.generation
        if entry.generation != generation:
            entry.folder, entry.generation = self._folder(entry.ids, entry.ran), generation
        with self._lock:
            old = self._shown.get(name)
            self._shown[name] = entry.folder
        if old is not entry.folder:
            gone = old.files.keys() - entry.folder.files.keys() if old is not None else set()
            self.tell([f"/{SEARCH}/{name}", *(p for key in gone for p in _file_paths(name, key, old.files[key].ext))])
        return entry.folder

    def sweep(self) -> None:
        """Results past their lifetime (or pushed out) and queries no longer listed: the kernel must
        forget what their folders, and search/ itself, showed."""
        with self._lock:
            self._results.expire()
            gone = {name: folder for name, folder in self._shown.items() if name not in self._results}
            for name in gone:
                del self._shown[name]
            unlisted = bool(self._queries.expire())
        for name, folder in gone.items():
            self.tell(_paths(name, folder))
        if unlisted:
            self.tell([f"/{SEARCH}"])

    # -- telling the kernel and stats.json ---------------------------------------------------
    def paths_of(self, places: Iterable[Placement]) -> list[str]:
        """The search/ paths the items at ``places`` had (removed or moved items: tell the kernel)."""
        with self._lock:
            shown = list(self._shown.items())
        out: list[str] = []
        for place in places:
            for name, folder in shown:
                if place.flat_stem in folder.files:
                    out += [f"/{SEARCH}/{name}", *_file_paths(name, place.flat_stem, place.ext)]
        return out

    def stats(self) -> dict[str, Any]:
        """stats.json's "search": lookups answered from held results (hits) or by an API search (misses)."""
        counts = self.counters.snapshot()["counts"]
        with self._lock:
            held, listed = len(self._results), len(self._queries)
        return {"ttl_seconds": self.ttl, "held": held, "listed": listed,
                **{k: counts.get(k, 0) for k in ("cache_hits", "cache_misses", "failures", "probes_ignored", "results")}}


def _file_paths(name: str, key: str, ext: str) -> list[str]:
    return [f"/{SEARCH}/{name}/{file_name(key, ext, kind)}" for kind in KINDS]


def _paths(name: str, folder: Folder | None) -> list[str]:
    """A query's folder and every file it showed."""
    files = folder.files.items() if folder is not None else ()
    return [f"/{SEARCH}/{name}", *(p for key, slim in files for p in _file_paths(name, key, slim.ext))]
