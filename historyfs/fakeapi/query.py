"""GET /v1/history semantics: the filters of one listing and how a page is cut from the order.

The library keeps its live records sorted newest first (``order``) with an id -> position map;
``select`` narrows the date window by bisection, starts right after the cursor (O(1) for a
live cursor, by bisection for a deleted one) and scans only until ``page_size + 1`` matches.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .records import Record


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The validated query of one listing (None = not given)."""

    page_size: int = 100
    start_after_history_item_id: str | None = None
    voice_id: str | None = None
    model_id: str | None = None
    date_before_unix: int | None = None  # exclusive
    date_after_unix: int | None = None  # inclusive
    sort_direction: str = "desc"
    search: str | None = None
    source: str | None = None

    def matches(self, r: Record) -> bool:
        """Every filter but the date window (which ``select`` applies by bisection)."""
        return (
            (self.voice_id is None or r.voice_id == self.voice_id)
            and (self.model_id is None or r.model_id == self.model_id)
            and (self.source is None or r.source == self.source)
            and (not self.search or self.search.lower() in r.searchable().lower())
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of a library's live records, newest first."""

    order: Sequence[Record]
    pos: dict[str, int]


def _desc_key(r: Record) -> tuple[int, int]:
    return (-r.date_unix, -r.seq)


def _window(order: Sequence[Record], q: ListQuery) -> tuple[int, int]:
    """Positions [lo, hi) of the desc order whose dates satisfy the date filters."""
    lo, hi = 0, len(order)
    if q.date_before_unix is not None:  # date < before  <=>  -date > -before
        lo = bisect_right(order, (-q.date_before_unix, float("inf")), key=_desc_key)
    if q.date_after_unix is not None:  # date >= after  <=>  -date <= -after
        hi = bisect_right(order, (-q.date_after_unix, float("inf")), key=_desc_key)
    return lo, max(lo, hi)


def cursor_bounds(snap: Snapshot, cursor: Record) -> tuple[int, int]:
    """(items newer than the cursor, items newer or equal): where each direction resumes."""
    i = snap.pos.get(cursor.history_item_id)
    if i is not None:
        return i, i + 1
    key = _desc_key(cursor)  # a deleted cursor: where it would sit
    return bisect_left(snap.order, key, key=_desc_key), bisect_right(snap.order, key, key=_desc_key)


def _positions(lo: int, hi: int, q: ListQuery, bounds: tuple[int, int] | None) -> Iterator[int]:
    if q.sort_direction == "asc":
        top = hi if bounds is None else min(hi, bounds[0])
        return iter(range(top - 1, lo - 1, -1))
    start = lo if bounds is None else max(lo, bounds[1])
    return iter(range(start, hi))


def select(snap: Snapshot, q: ListQuery, cursor: Record | None) -> tuple[list[Record], bool]:
    """The page of ``q`` after ``cursor`` and whether more matching items follow."""
    lo, hi = _window(snap.order, q)
    bounds = cursor_bounds(snap, cursor) if cursor is not None else None
    page: list[Record] = []
    for i in _positions(lo, hi, q, bounds):
        r = snap.order[i]
        if q.matches(r):
            if len(page) == q.page_size:
                return page, True
            page.append(r)
    return page, False
