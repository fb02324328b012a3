"""Which items an export covers: parse the user's filters, split them into what the API filters
server-side and what is checked here, and apply both (AND).

Decisions:
- ``--voice`` takes names or ids (repeatable). A value matches a voice whose id equals it, or whose
  name or layout folder equals it ignoring case (so "Dialogue" and "Unknown voice" work too). A
  value matching no voice is a ConfigError before any transfer; a name shared by several voices
  selects all of them (the mount shows them as separate folders; exporting all is the
  unsurprising choice, and they are logged).
- Server-side: ``voice_id`` when exactly one voice id is selected, ``model_id``, ``search``,
  ``source``, ``date_after_unix``/``date_before_unix``. Client-side: several voices, voice
  folders without an id, ``--path``; dates, model and source are checked again (exact semantics).
  ``--search`` is trusted to the server (its matching rules are the API's).
- Dates: ``YYYY-MM-DD`` is a whole day in ``--tz``; ``--until DAY`` includes that whole day. An
  ISO datetime is an instant (naive = in ``--tz``); both bounds are inclusive to the second.
- ``--path`` selects what the mount shows there: a folder of by-date, by-model or by-voice; ``recent``
  (the mount's default count of newest items, keys ``recent/<flat name>``); ``search/<words>`` (what the
  API's search finds, as ``--search <words>``; keys ``search/<words>/<flat name>``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from historyfs.errors import ConfigError
from historyfs.layout import RECENT, RECENT_DEFAULT, SEARCH, Placement, newest, split_selection
from historyfs.models import HistoryItem

log = logging.getLogger(__name__)

DEFAULT_VIEW = "by-voice"
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Selection:
    """The user's filters, as given (strings); all of them combine with AND."""

    voices: tuple[str, ...] = ()
    model: str | None = None
    since: str | None = None
    until: str | None = None
    search: str | None = None
    source: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """Half-open time window in unix seconds: ``after <= date_unix < before``."""

    after: int | None = None
    before: int | None = None

    def contains(self, t: int) -> bool:
        return (self.after is None or t >= self.after) and (self.before is None or t < self.before)


@dataclass(frozen=True, slots=True)
class Criteria:
    """A Selection resolved against the listing: what to ask the server, and what to check here."""

    voice_ids: frozenset[str] | None = None  # None: any voice
    voice_dirs: frozenset[str] = frozenset()  # folders of items without a voice id ("Dialogue")
    model: str | None = None
    source: str | None = None
    search: str | None = None
    window: Window = field(default_factory=Window)
    view: str = DEFAULT_VIEW  # where keys go: a view, or a search's folder ("search/<words>")
    folder: tuple[str, ...] | None = None
    only: frozenset[str] | None = None  # --path recent: the ids of the newest items

    def over(self, items: Iterable[HistoryItem]) -> Criteria:
        """The same selection over a listing that has grown (a watch's poll): recent/ is the newest again."""
        if self.view != RECENT:
            return self
        return replace(self, only=frozenset(i.history_item_id for i in newest(items, RECENT_DEFAULT)))

    def server_filters(self) -> dict[str, Any]:
        """The list endpoint's filters that express (part of) this selection."""
        f: dict[str, Any] = {"model_id": self.model, "source": self.source, "search": self.search}
        f.update(date_after_unix=self.window.after, date_before_unix=self.window.before)
        if self.voice_ids is not None and len(self.voice_ids) == 1 and not self.voice_dirs:
            f["voice_id"] = next(iter(self.voice_ids))
        return {k: v for k, v in f.items() if v is not None}

    def matches(self, item: HistoryItem, place: Placement) -> bool:
        """The client-side checks (everything but ``search``)."""
        return (
            self._voice_ok(item, place)
            and (self.model is None or item.model_id == self.model)
            and (self.source is None or item.source == self.source)
            and self.window.contains(item.date_unix)
            and (self.folder is None or place.under(self.view, self.folder))
            and (self.only is None or item.history_item_id in self.only)
        )

    def _voice_ok(self, item: HistoryItem, place: Placement) -> bool:
        if self.voice_ids is None:
            return True
        return item.voice_id in self.voice_ids or (not item.voice_id and place.voice_dir in self.voice_dirs)


def resolve(sel: Selection, tz: tzinfo, items: Iterable[HistoryItem], placements: Mapping[str, Placement]) -> Criteria:
    """Check and resolve ``sel`` (ConfigError on bad input) against the full listing."""
    view, folder = split_selection(sel.path) if sel.path else (DEFAULT_VIEW, None)
    ids, dirs = resolve_voices(sel.voices, items, placements) if sel.voices else (None, frozenset[str]())
    search, only = _opt(sel.search), None
    if view == RECENT:
        folder, only = None, frozenset(i.history_item_id for i in newest(items, RECENT_DEFAULT))
    elif view == SEARCH:
        assert folder is not None
        if search is not None and search != folder[0]:
            raise ConfigError(f"--search {sel.search!r} and --path {sel.path!r} ask for two searches: give one")
        view, folder, search = f"{SEARCH}/{folder[0]}", None, folder[0]
    window = parse_window(sel.since, sel.until, tz)
    return Criteria(ids, dirs, _opt(sel.model), _opt(sel.source), search, window, view, folder, only)


def _opt(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None


def resolve_voices(wanted: Iterable[str], items: Iterable[HistoryItem], placements: Mapping[str, Placement]) -> tuple[frozenset[str], frozenset[str]]:
    """(voice ids, voice folders of id-less items) matching any of ``wanted``; ConfigError if one matches nothing."""
    ids: set[str] = set()
    dirs: set[str] = set()
    by_id, by_name = _voice_index(items, placements)
    for name in wanted:
        key = name.strip()
        found = by_id.get(key, set()) | by_name.get(key.casefold(), set())
        if not found:
            raise ConfigError(f"no voice named {name!r} in the history (use a voice name or id)")
        if len(found) > 1:
            log.info("voice %r matches %d voices; exporting all of them", name, len(found))
        ids.update(v for kind, v in found if kind == "id")
        dirs.update(v for kind, v in found if kind == "dir")
    return frozenset(ids), frozenset(dirs)


_Index = dict[str, set[tuple[str, str]]]


def _voice_index(items: Iterable[HistoryItem], placements: Mapping[str, Placement]) -> tuple[_Index, _Index]:
    """(exact voice id, casefolded name or folder) -> {("id", voice_id) | ("dir", folder)}."""
    by_id: _Index = {}
    by_name: _Index = {}
    for item in items:
        place = placements.get(item.history_item_id)
        folder = place.voice_dir if place else None
        target = ("id", item.voice_id) if item.voice_id else ("dir", folder or "")
        if item.voice_id:
            by_id.setdefault(item.voice_id, set()).add(target)
        for name in (item.voice_name, folder):
            if name:
                by_name.setdefault(name.casefold(), set()).add(target)
    return by_id, by_name


def parse_window(since: str | None, until: str | None, tz: tzinfo) -> Window:
    """--since/--until as a Window; ConfigError on a bad date or an empty window."""
    after = _instant(since, tz, "--since", end=False) if since else None
    before = _instant(until, tz, "--until", end=True) if until else None
    if after is not None and before is not None and after >= before:
        raise ConfigError(f"--since {since} is not before --until {until}")
    return Window(after, before)


def _instant(text: str, tz: tzinfo, flag: str, *, end: bool) -> int:
    """Start of the day (or end: start of the next day) or the instant, as unix seconds."""
    text = text.strip()
    try:
        if _DAY_RE.match(text):
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise ConfigError(f"bad date for {flag}: {text!r} (expected YYYY-MM-DD or an ISO date and time)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        t = moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ConfigError(f"date out of range for {flag}: {text!r}") from None
    return math.floor(t) + 1 if end else math.ceil(t)
