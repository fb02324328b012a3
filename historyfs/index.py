"""The mount's persistent tree: slim item records in RAM, their JSON and learned sizes in SQLite.

Owns: the ``index.sqlite3`` database in the cache folder (WAL; tables ``items``, ``sizes``,
``meta``; ``deletes.py`` adds ``journal`` to the same file), the in-memory records (``tree.Slim``:
only what a path, a stat and the layout need; no raw JSON, so 100,000 items stay small) and the
views built from them with ``historyfs.layout`` (as ``tree.Folder`` trees): the tree views the
mount shows and recent/, a function of the items (search/ is not the index's: ``search.Searches``).
Never touches the network: callers feed it items (``merge`` / ``replace_all``) and it answers
lookups from memory.

Listed items reach RAM (and so the mount) first; their sidecars are encoded and stored by a
writer thread that runs behind the listing (at most ``WRITE_BACKLOG`` batches, so memory stays
bounded) and overlaps the network waits. Until its batch is written an item's sidecar size is
unknown (-1): ``sidecar_size`` and ``sidecar`` wait for the writer (``flush``) in that case.

Concurrency and lock order: ``_update`` (serialises writers: merge, replace_all, remove; held
during a whole rebuild) -> ``_tree`` (short: swapping the root, pruning folders, snapshotting a
folder's names) -> ``_db`` (the SQLite connection). Readers take no lock for a lookup (dict reads
are atomic under the GIL; a rebuild swaps in a new tree) and ``_tree`` to copy a folder's names.
The writer thread takes only ``_db``; ``flush`` may be called with ``_update`` held.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import logging
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import tzinfo
from pathlib import Path
from typing import NamedTuple

from .layout import RECENT, RECENT_DEFAULT, TREE_VIEWS, VIEWS, Layout, Placement, cache_keys, newest
from .models import HistoryItem
from .tree import Folder, Slim, flat_after, flat_folder, intern_opt, insert, unlink, walk_after

__all__ = ["Changes", "Folder", "Index", "Slim", "scope_of"]

log = logging.getLogger(__name__)

#: Listed batches (of 1,000 items) the SQLite writer may lag behind the listing.
WRITE_BACKLOG = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, date_unix INTEGER NOT NULL, content_type TEXT NOT NULL,
    voice_id TEXT, voice_name TEXT, is_dialogue INTEGER NOT NULL, display_text TEXT NOT NULL,
    sidecar BLOB NOT NULL, model_id TEXT);
CREATE TABLE IF NOT EXISTS sizes (key TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Changes(NamedTuple):
    """What a change of the tree did: places items left (removed, moved, or dropped out of recent/)
    and places they took."""

    left: list[Placement]
    took: list[Placement]


def scope_of(api_url: str, api_key: str) -> str:
    """A short digest naming the account a database belongs to (the key itself is never stored)."""
    return hashlib.sha256(f"{api_url}\0{api_key}".encode()).hexdigest()[:16]


class Index:
    """The tree and its SQLite store. ``open`` it, ``load`` it, then feed it items."""

    def __init__(self, db_path: Path, tz: tzinfo, scope: str = "",
                 on_change: Callable[[Changes], None] | None = None, views: tuple[str, ...] = VIEWS,
                 recent: int = RECENT_DEFAULT) -> None:
        self.layout = Layout(tz)
        #: Told after each change of the tree that moved, removed or added items (the mount tells the kernel).
        self.on_change = on_change
        self.trees = tuple(v for v in TREE_VIEWS if v in views)  # read-only: the tree views built
        self.recent = recent if RECENT in views else 0  # read-only: recent/'s size (0: no recent/)
        #: Bumped by every change of the tree (readers holding derived state compare it).
        self.generation = 0
        self._update = threading.Lock()
        self._tree = threading.Lock()
        self._db_lock = threading.Lock()
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))  # private before SQLite (and its -wal, -shm) use it
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_model_column()
        self._items: dict[str, Slim] = {}  # guarded by _update for writes
        self._left: list[Placement] = []  # places of items forgotten since the last rebuild; guarded by _update
        self._sizes: dict[str, int] = {}  # learned sizes by cache key; dict ops are atomic
        self.root = Folder()  # replaced whole under _tree
        self._writes: queue.Queue[list[tuple[Slim, HistoryItem]] | None] = queue.Queue(WRITE_BACKLOG)
        self._writer: threading.Thread | None = None  # started by the first listing; guarded by _update
        self._check_scope(scope)

    # -- SQLite -------------------------------------------------------------------------
    def execute(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement on the shared connection (autocommit) and return its rows."""
        with self._db_lock:
            return self._db.execute(sql, args).fetchall()

    def _executemany(self, sql: str, rows: Iterable[tuple[object, ...]]) -> None:
        with self._db_lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            finally:
                self._db.execute("COMMIT")

    def _add_model_column(self) -> None:
        """An index written before by-model existed: add model_id, filled from the stored sidecars."""
        if "model_id" not in {r[1] for r in self.execute("PRAGMA table_info(items)")}:
            self.execute("ALTER TABLE items ADD COLUMN model_id TEXT")
            self.execute("UPDATE items SET model_id = json_extract(CAST(sidecar AS TEXT), '$.model_id')")

    def _check_scope(self, scope: str) -> None:
        """Forget items and sizes if the database belonged to another account or API URL."""
        if self.get_meta("scope") not in (None, scope):
            for table in ("items", "sizes", "meta"):
                self.execute(f"DELETE FROM {table}")
        self.set_meta("scope", scope)

    def get_meta(self, key: str) -> str | None:
        rows = self.execute("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join()
            self._writer = None
        with self._db_lock:
            self._db.close()

    # -- the writer thread ----------------------------------------------------------------
    def flush(self) -> None:
        """Wait until every listed item is stored (and its sidecar size known)."""
        if self._writes.unfinished_tasks:
            self._writes.join()

    def _queue_write(self, batch: list[tuple[Slim, HistoryItem]]) -> None:
        """Hand a batch to the writer (caller holds _update); blocks while WRITE_BACKLOG are waiting."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="historyfs-index", daemon=True)
            self._writer.start()
        self._writes.put(batch)

    def _write_loop(self) -> None:
        while (batch := self._writes.get()) is not None:
            try:
                self._write(batch)
            except Exception:  # e.g. disk full: the items stay listed; their sidecars cannot be opened
                log.exception("could not store %d listed items", len(batch))
            finally:
                self._writes.task_done()
        self._writes.task_done()

    def _write(self, batch: list[tuple[Slim, HistoryItem]]) -> None:
        rows = []
        for slim, it in batch:
            sidecar = it.to_json_bytes()
            slim.sidecar_size = len(sidecar)
            rows.append((slim.history_item_id, slim.date_unix, slim.content_type, slim.voice_id,
                         slim.voice_name, int(slim.is_dialogue), slim.text_utf8.decode(), sidecar, slim.model_id))
        self._executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # -- loading and updating -------------------------------------------------------------
    def load(self) -> int:
        """Read the stored items and sizes and build the tree; returns the item count."""
        self._sizes = {str(k): int(v) for k, v in self.execute("SELECT key, size FROM sizes")}  # type: ignore[call-overload]
        with self._update, self._db_lock:
            cursor = self._db.execute(
                "SELECT id, date_unix, content_type, voice_id, voice_name, model_id, is_dialogue, display_text,"
                " length(sidecar) FROM items")
            for r in cursor:  # row by row: no list of 100,000 tuples
                self._items[r[0]] = Slim(r[0], r[1], sys.intern(r[2]), intern_opt(r[3]), intern_opt(r[4]),
                                         intern_opt(r[5]), bool(r[6]), r[7].encode(), r[8])
        with self._update:
            self._rebuild_locked()
        return len(self._items)

    def merge(self, items: Iterable[HistoryItem]) -> int:
        """Add the items not known yet (streamed in batches); returns how many were new."""
        added = 0
        try:
            for batch in _batches(items):
                added += self._add(batch)
        finally:
            if added:
                with self._update:
                    self._rebuild_locked()
        return added

    def replace_all(self, items: Iterable[HistoryItem]) -> tuple[int, int]:
        """Make the index exactly ``items``, a complete listing; returns (added, removed).

        The listing is consumed in batches, so memory holds one batch of full items at a time.
        If it fails part-way nothing is removed (an error never empties the tree).
        """
        seen: set[str] = set()
        added, removed = 0, 0
        try:
            for batch in _batches(items):
                seen.update(it.history_item_id for it in batch)
                added += self._add(batch)
            with self._update:
                gone = [i for i in self._items if i not in seen]
                self._left += self._forget(gone)
                removed = len(gone)
        finally:
            if added or removed:
                with self._update:
                    self._rebuild_locked()
        return added, removed

    def _add(self, batch: list[HistoryItem]) -> int:
        with self._update:
            new = [it for it in batch if it.history_item_id not in self._items]
            self._store(new)
        return len(new)

    def remove(self, item_id: str) -> Slim | None:
        """Drop one item (every view, its row, its sizes); empty folders disappear."""
        with self._update:
            slim = self._items.get(item_id)
            if slim is None:
                return None
            left = self._forget([item_id])
            with self._tree:
                for view in self.trees:
                    unlink(self.root, view, slim)
            recent = self.root.dirs.get(RECENT)
            if recent is not None and slim.flat_stem in recent.files:  # the next newest item moves up
                self._swap_recent(self.root)
            self.generation += 1
        self._tell(Changes(left, []))
        return slim

    def _tell(self, changes: Changes) -> None:
        if self.on_change is not None and (changes.left or changes.took):
            try:
                self.on_change(changes)
            except Exception:  # telling the kernel is best effort: never fail a change for it
                log.exception("could not report a change of the tree")

    def _store(self, items: list[HistoryItem]) -> None:
        """Into RAM now, into SQLite by the writer thread (caller holds _update)."""
        batch = [(Slim.of(it), it) for it in items]
        for slim, _ in batch:
            self._items[slim.history_item_id] = slim
        if batch:
            self._queue_write(batch)

    def _forget(self, ids: list[str]) -> list[Placement]:
        """Drop items from RAM and SQLite (not yet from the tree); returns where they were."""
        left: list[Placement] = []
        if not ids:
            return left
        self.flush()  # a pending insert must not resurrect a row deleted here
        for i in ids:
            slim = self._items.pop(i, None)
            if slim is not None:
                left.append(slim.placement)
            for key in cache_keys(i, slim.ext if slim else ""):
                self._sizes.pop(key, None)
        self._executemany("DELETE FROM items WHERE id=?", ((i,) for i in ids))
        self._executemany("DELETE FROM sizes WHERE key >= ? AND key < ?", ((i + ".", i + "/") for i in ids))
        return left

    def _rebuild_locked(self) -> None:
        """Place every item with the layout and swap in a fresh tree (caller holds _update).

        Items whose place changed (a new collision, a voice named by an older item) and the
        items removed since the last rebuild are reported to ``on_change`` with the new ones.
        """
        root = Folder()
        for view in self.trees:
            root.subdir(view)
        placements = self.layout.place_all(list(self._items.values()))
        left, took = self._left, []
        self._left = []
        for item_id, p in placements.items():
            slim = self._items[item_id]
            old = slim.placement if slim.stem else None
            slim.stem, slim.ext, slim.flat = p.stem, sys.intern(p.ext), p.flat
            slim.voice_dir, slim.day, slim.model_dir = sys.intern(p.voice_dir), sys.intern(p.day), sys.intern(p.model_dir)
            if old != p:  # p is what slim now holds
                took.append(p)
                if old is not None:
                    left.append(old)
            for view in self.trees:
                insert(root, view, slim)
        left += self._swap_recent(root)
        with self._tree:
            self.root = root
        self.generation += 1
        _give_back_memory()
        self._tell(Changes(left, took))

    def _swap_recent(self, root: Folder) -> list[Placement]:
        """Put recent/ (the newest items) in ``root``; returns where the items that dropped out were."""
        if not self.recent:
            return []
        old = self.root.dirs.get(RECENT)
        folder = flat_folder(newest(self._items.values(), self.recent))
        with self._tree:
            root.dirs[RECENT] = folder
        kept = {s.history_item_id for s in folder.files.values()}
        gone = [] if old is None else [s for s in old.files.values() if s.history_item_id not in kept]
        return [s.placement for s in gone if s.history_item_id in self._items]

    # -- queries --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def item(self, item_id: str) -> Slim | None:
        return self._items.get(item_id)

    def folder(self, parts: tuple[str, ...]) -> Folder | None:
        """The folder at ``parts`` below the root ((), ("by-date",), ...), or None."""
        node: Folder | None = self.root
        for name in parts:
            node = node.dirs.get(name) if node is not None else None
        return node

    def names(self, folder: Folder) -> tuple[list[str], list[tuple[str, Slim]]]:
        """A consistent copy of a folder's sub-folder names and (stem, item) pairs."""
        with self._tree:
            return list(folder.dirs), list(folder.files.items())

    def newest_date(self) -> int | None:
        return max((s.date_unix for s in self._items.values()), default=None)

    def ids(self) -> set[str]:
        return set(self._items)

    def sidecar_size(self, slim: Slim) -> int:
        """The exact size of the item's sidecar (waits for the writer if the item is just listed)."""
        if slim.sidecar_size < 0:
            self.flush()
        return max(slim.sidecar_size, 0)

    def sidecar(self, item_id: str) -> bytes | None:
        """The item's metadata sidecar, exactly ``HistoryItem.to_json_bytes()`` as stored."""
        self.flush()
        rows = self.execute("SELECT sidecar FROM items WHERE id=?", (item_id,))
        return bytes(rows[0][0]) if rows else None  # type: ignore[arg-type]

    def size(self, key: str) -> int | None:
        return self._sizes.get(key)

    def set_size(self, key: str, size: int) -> None:
        """Remember a learned size forever (items are immutable)."""
        if self._sizes.get(key) != size:
            self._sizes[key] = size
            self.execute("INSERT OR REPLACE INTO sizes(key, size) VALUES (?, ?)", (key, size))

    def following(self, view: str, slim: Slim, n: int) -> list[Slim]:
        """Up to ``n`` items after ``slim`` in the order a recursive copy visits ``view``."""
        if view == RECENT:
            return flat_after(self.folder((RECENT,)), slim.flat_stem, n)
        out: list[Slim] = []
        try:
            for s in walk_after(self.folder((view,)), slim.dir_parts(view), slim.stem):
                if len(out) >= n:
                    break
                out.append(s)
        except RuntimeError:  # a folder changed under the walk (a delete): read-ahead is a hint
            pass
        return out


def _give_back_memory() -> None:
    """Return the rebuild's transient memory to the OS (glibc keeps freed arenas otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _batches(items: Iterable[HistoryItem], size: int = 1000) -> Iterator[list[HistoryItem]]:
    """Chunks of a listing; what arrived before a failure is still yielded, then the error raised."""
    batch: list[HistoryItem] = []
    try:
        for it in items:
            batch.append(it)
            if len(batch) >= size:
                yield batch
                batch = []
    except Exception:
        if batch:
            yield batch
        raise
    if batch:
        yield batch
