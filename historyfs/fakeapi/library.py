"""One tenant's history: the stored records, their sorted order, listing, add, delete and audio.

Thread safety: ``_lock`` guards ``_by_id``, ``_deleted``, ``_added`` and the cached snapshot.
A snapshot (order + id -> position) is immutable once built and rebuilt lazily after a
change, so listings scan it without holding the lock. Deleted records stay in ``_by_id``
(marked in ``_deleted``) so a cursor naming a just-deleted item still resumes correctly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from . import audio, generate
from .query import ListQuery, Snapshot, select
from .records import RECORD_FIELDS, Record, dialogue_from_json
from .stats import Stats


class Library:
    """A seeded, deterministic history library behind one API key."""

    def __init__(self, items: int = 200, seed: int = 1, *, name: str = "default") -> None:
        self.name = name
        self.seed = seed
        self.stats = Stats()
        self.on_change: Callable[[Library], None] | None = None
        self._lock = threading.RLock()
        self._rng = random.Random(f"added:{seed}")
        records = generate.seeded_records(items, seed)
        self._by_id: dict[str, Record] = {r.history_item_id: r for r in records}
        self._deleted: set[str] = set()
        self._added: list[Record] = []
        self._next_seq = len(records)
        self._snap: Snapshot | None = None

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The live records newest first (rebuilt only after a change)."""
        with self._lock:
            if self._snap is None:
                live = [r for r in self._by_id.values() if r.history_item_id not in self._deleted]
                live.sort(key=lambda r: r.sort_key, reverse=True)
                self._snap = Snapshot(tuple(live), {r.history_item_id: i for i, r in enumerate(live)})
            return self._snap

    def record(self, item_id: str, *, include_deleted: bool = False) -> Record | None:
        with self._lock:
            r = self._by_id.get(item_id)
            if r is None or (item_id in self._deleted and not include_deleted):
                return None
            return r

    def _live(self, item_id: str) -> Record:
        r = self.record(item_id)
        if r is None:
            raise KeyError(item_id)
        return r

    def items(self) -> list[dict[str, Any]]:
        """Every live item as the API serves it, newest first."""
        return [r.to_json() for r in self.snapshot().order]

    def __len__(self) -> int:
        return len(self.snapshot().order)

    def get(self, item_id: str) -> dict[str, Any]:
        """One live item's JSON; KeyError if unknown or deleted."""
        return self._live(item_id).to_json()

    def page(self, q: ListQuery) -> tuple[list[Record], bool]:
        """A listing page; KeyError if the cursor names no item this library ever had."""
        cursor = None
        if q.start_after_history_item_id is not None:
            cursor = self.record(q.start_after_history_item_id, include_deleted=True)
            if cursor is None:
                raise KeyError(q.start_after_history_item_id)
        return select(self.snapshot(), q, cursor)

    def audio_bytes(self, item_id: str) -> bytes:
        """The whole body of GET /v1/history/{id}/audio (for tests; the server streams)."""
        return b"".join(self._live(item_id).audio()[2])

    def wav_bytes(self, item_id: str) -> bytes:
        """The item as WAV, as POST /v1/history/download with output_format "wav" serves it."""
        return b"".join(self._live(item_id).audio("wav")[2])

    # -- changing --------------------------------------------------------------------------
    def delete(self, item_id: str) -> None:
        """Delete a live item; KeyError if unknown or already deleted."""
        with self._lock:
            self._live(item_id)
            self._deleted.add(item_id)
            self._snap = None
        self._changed()

    def add_item(self, **overrides: Any) -> dict[str, Any]:
        """Add a new item (newest unless ``date_unix`` says otherwise) and return its JSON.

        Any API field may be overridden; unknown fields are served as given. ``audio_size``
        (bytes, approximate) sets how big its audio is.
        """
        with self._lock:
            r = self._new_record(dict(overrides))
            if r.history_item_id in self._by_id:
                raise ValueError(f"history item {r.history_item_id} already exists")
            self._store(r, added=True)
        self._changed()
        return r.to_json()

    def _new_record(self, overrides: dict[str, Any]) -> Record:
        size = overrides.pop("audio_size", None)
        date = int(overrides.pop("date_unix", time.time()))
        counter = max((r.character_count_change_to for r in self._by_id.values()), default=0)
        r = generate.added_record(self._rng, self._next_seq, date, counter)
        apply_overrides(r, overrides)
        if size is not None:
            r.audio_frames = max(1, round(int(size) / audio.mean_frame_bytes()))
        return r

    def _store(self, r: Record, *, added: bool) -> None:
        self._by_id[r.history_item_id] = r
        self._next_seq = max(self._next_seq, r.seq + 1)
        if added:
            self._added.append(r)
        self._snap = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # -- persistence (used by state.py) ----------------------------------------------------
    def changes(self) -> tuple[list[str], list[Record]]:
        """(deleted ids, added records) since the seeded start."""
        with self._lock:
            return sorted(self._deleted), list(self._added)

    def restore(self, deleted: list[str], added: list[Record]) -> None:
        """Re-apply persisted changes (unknown deleted ids are ignored)."""
        with self._lock:
            for r in added:
                if r.history_item_id not in self._by_id:
                    self._store(r, added=True)
            self._deleted.update(i for i in deleted if i in self._by_id)
            self._snap = None


def apply_overrides(r: Record, overrides: dict[str, Any]) -> None:
    """Set API fields on a record; fields the record does not model are served as given."""
    extra: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "dialogue":
            r.dialogue = dialogue_from_json(value)
        elif key in RECORD_FIELDS:
            setattr(r, key, value)
        else:
            extra[key] = value
    if r.dialogue is not None:  # a dialogue has no single voice or text unless told
        for key in ("voice_id", "voice_name", "voice_category", "text"):
            if key not in overrides:
                setattr(r, key, None)
    r.extra = extra or None
