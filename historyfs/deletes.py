"""Deleting items through the API, crash-safely: a journal in the index database.

Owns the ``journal`` table (item id, state ``pending``/``done``, time). A delete is journaled
(committed) before the DELETE is sent, and marked done once the API confirmed it and the item
left the index and the cache. A mount that died in between finds the entry ``pending`` on its
next start and ``replay``s it: if the item is already gone (``get`` says NotFound) the DELETE
is never sent twice. Concurrency: ``_lock`` serialises deletes (then Index locks, then the DB).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from .errors import ApiError, NotFound, OutcomeUnknown, Unavailable
from .index import Index
from .layout import cache_keys
from .stats import Counters

log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS journal (id TEXT PRIMARY KEY, state TEXT NOT NULL, t REAL NOT NULL)"


class DeleteApi(Protocol):
    def get(self, item_id: str) -> object: ...

    def delete(self, item_id: str) -> None: ...


class Discarder(Protocol):
    def discard(self, key: str) -> None: ...


class DeleteJournal:
    """Journaled deletes of items, shared by every unlink of the mount."""

    def __init__(self, index: Index, api: DeleteApi, cache: Discarder, counters: Counters | None = None) -> None:
        self.index, self.api, self.cache = index, api, cache
        self.counters = counters or Counters()
        self._lock = threading.Lock()
        index.execute(_SCHEMA)

    def _set(self, item_id: str, state: str) -> None:
        self.index.execute("INSERT OR REPLACE INTO journal(id, state, t) VALUES (?, ?, ?)", (item_id, state, time.time()))

    def pending(self) -> list[str]:
        return [str(r[0]) for r in self.index.execute("SELECT id FROM journal WHERE state='pending' ORDER BY t")]

    def state(self, item_id: str) -> str | None:
        rows = self.index.execute("SELECT state FROM journal WHERE id=?", (item_id,))
        return str(rows[0][0]) if rows else None

    def delete(self, item_id: str) -> None:
        """Delete one item remotely, then locally. On an API error nothing changes and it is raised."""
        with self._lock:
            self._set(item_id, "pending")
            try:
                self._delete_once(item_id)
            except NotFound:
                log.info("item %s was already deleted elsewhere", item_id)
            except BaseException:
                self.index.execute("DELETE FROM journal WHERE id=?", (item_id,))
                raise
            self._finish(item_id)

    def _delete_once(self, item_id: str) -> None:
        """DELETE, and when its answer was lost, ask whether it took effect (never send it twice)."""
        try:
            self.api.delete(item_id)
        except OutcomeUnknown:
            self.api.get(item_id)  # NotFound: it did take effect
            raise

    def _finish(self, item_id: str) -> None:
        slim = self.index.remove(item_id)
        for key in cache_keys(item_id, slim.ext if slim else ".mp3"):
            self.cache.discard(key)
        self._set(item_id, "done")
        self.counters.add("deletes_done")
        log.info("deleted history item %s", item_id)  # done as asked: not a warning

    def replay(self) -> int:
        """Finish the deletes a previous mount journaled but did not complete; returns how many."""
        done = 0
        for item_id in self.pending():
            try:
                self._replay_one(item_id)
                done += 1
            except Unavailable as exc:
                log.warning("pending delete of %s not finished yet (API unavailable: %s)", item_id, exc)
            except ApiError as exc:
                log.warning("pending delete of %s dropped: %s", item_id, exc)
                self.index.execute("DELETE FROM journal WHERE id=?", (item_id,))
        return done

    def _replay_one(self, item_id: str) -> None:
        with self._lock:
            try:
                self.api.get(item_id)
            except NotFound:  # the DELETE did reach the API: never send it twice
                self._finish(item_id)
                return
            try:
                self._delete_once(item_id)
            except NotFound:
                pass
            self._finish(item_id)
