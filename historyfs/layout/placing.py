"""Placing a whole history (pure): voice and model folders, stems, and flat-name counters, all collision-free.

``Layout.place_all`` gives every item its ``Placement``; the rules are in ``historyfs.layout``'s docstring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from .clean import NAME_MAX_BYTES, STEM_MAX_BYTES, blen, clean_chars, clean_component, extension_for, fit, stem_text
from .paths import UNKNOWN_MODEL_DIR, Placement, flat_stem

ID_CHARS = 8
ID_MAX_BYTES = 64  # cap for the id part, so the text always keeps room
VOICE_ID_CHARS = 6
DIALOGUE_DIR = "Dialogue"
UNKNOWN_VOICE_DIR = "Unknown voice"
DIALOGUE_KEY = "dialogue"
UNKNOWN_KEY = "unknown"
_PSEUDO_DIRS = {DIALOGUE_KEY: DIALOGUE_DIR, UNKNOWN_KEY: UNKNOWN_VOICE_DIR}
_MIN_TS = -62135596800 + 2 * 86400  # 0001-01-03 UTC: leaves room for any UTC offset
_MAX_TS = 253402300799 - 2 * 86400  # 9999-12-29 UTC


class Placeable(Protocol):
    """What the layout reads from an item (HistoryItem has it; so do the mount's slim records)."""

    @property
    def history_item_id(self) -> str: ...
    @property
    def date_unix(self) -> int: ...
    @property
    def content_type(self) -> str: ...
    @property
    def voice_id(self) -> str | None: ...
    @property
    def voice_name(self) -> str | None: ...
    @property
    def model_id(self) -> str | None: ...
    @property
    def is_dialogue(self) -> bool: ...
    @property
    def display_text(self) -> str: ...


def voice_key(item: Placeable) -> str:
    """voice_id, else "name:<voice_name>", else the pseudo-voices "dialogue" / "unknown"."""
    if item.is_dialogue:
        return DIALOGUE_KEY
    if item.voice_id:
        return item.voice_id
    return f"name:{item.voice_name}" if item.voice_name else UNKNOWN_KEY


def model_key(item: Placeable) -> str:
    """model_id, or "" for an item without one (the "Unknown model" folder)."""
    return item.model_id or ""


@dataclass(slots=True)
class _Pending:
    """One item's pieces while place_all works (dropped afterwards)."""

    item_id: str
    voice_key: str
    voice_name: str | None
    model_key: str
    day: str
    clock: str
    text: str
    ext: str


def _id_part(raw: str, length: int, counter: int) -> str:
    """The first ``length`` characters of an id, cleaned and capped, plus "~counter" if any."""
    part = raw[:length]
    if not (part.isalnum() and part.isascii()):  # real ids are; skip the work for them
        part = fit(clean_chars(part), ID_MAX_BYTES)
    return f"{part}~{counter}" if counter else part


def _stem(p: _Pending, extra: int, counter: int) -> str:
    tail = f" [{_id_part(p.item_id, ID_CHARS + extra, counter)}]"
    budget = STEM_MAX_BYTES - len(p.clock) - 1 - blen(tail)
    return f"{p.clock} {fit(p.text, budget).rstrip() or '_'}{tail}"


def _suffixed(name: str, fallback: str, disc: str, extra: int, counter: int) -> str:
    """A folder name told apart from others with the same name: " (<start of disc>)" appended."""
    suffix = f" ({_id_part(disc, VOICE_ID_CHARS - 1 + extra, counter)})"
    return clean_component(name, fallback, max_bytes=NAME_MAX_BYTES - blen(suffix)) + suffix


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _voice_dir(key: str, name: str, extra: int, counter: int) -> str:
    """A voice folder; ``name`` "" means the voice has an id but no name (always suffixed)."""
    if not name:
        name, extra = UNKNOWN_VOICE_DIR, max(extra, 1)
    if extra == 0 and counter == 0:
        return clean_component(name, UNKNOWN_VOICE_DIR)
    return _suffixed(name, UNKNOWN_VOICE_DIR, _sha(key) if key.startswith("name:") else key, extra, counter)


def _model_dir(key: str, extra: int, counter: int) -> str:
    """A model folder: the model id cleaned like a voice name; "" is the pseudo-folder "Unknown model"."""
    if not key:
        return UNKNOWN_MODEL_DIR
    if extra == 0 and counter == 0:
        return clean_component(key, UNKNOWN_MODEL_DIR)
    return _suffixed(key, UNKNOWN_MODEL_DIR, _sha(key), extra, counter)


Namer = Callable[[int, int, int], str]  # (entry index, extra id chars, counter) -> name


def _unique_names(count: int, namer: Namer, fixed: Callable[[int], bool] = lambda i: False) -> list[str]:
    """Names for ``count`` entries of one folder, unique ignoring case, entries in canonical order.

    Entries whose base names collide (except ``fixed`` ones, which keep theirs) are renamed as a
    group with extra=1, 2, ... until unique and clear of every base name, then with counters.
    """
    names = [namer(i, 0, 0) for i in range(count)]
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.casefold(), []).append(i)
    if len(groups) == count:
        return names
    used = set(groups)
    for members in groups.values():
        movable = [i for i in members if not fixed(i)] if len(members) > 1 else []
        for i, name in _rename_group(movable, namer, used):
            names[i] = name
    return names


def _rename_group(members: list[int], namer: Namer, used: set[str]) -> list[tuple[int, str]]:
    previous: list[str] = []
    extra = 0
    while members:
        extra += 1
        names = [namer(i, extra, 0) for i in members]
        folded = [n.casefold() for n in names]
        if len(set(folded)) == len(folded) and used.isdisjoint(folded):
            used.update(folded)
            return list(zip(members, names))
        if names == previous:
            return [(i, _counted(namer, i, extra, used)) for i in members]
        previous = names
    return []


def _counted(namer: Namer, i: int, extra: int, used: set[str]) -> str:
    counter = 1
    while (name := namer(i, extra, counter)).casefold() in used:
        counter += 1
    used.add(name.casefold())
    return name


class Layout:
    """Places items in the folder scheme for one time zone (see ``historyfs.layout``'s docstring)."""

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz  # read-only

    def place_all(self, items: Iterable[Placeable]) -> dict[str, Placement]:
        """Every item's Placement by id; the same set of items gives the same result in any order."""
        pending = self._pending_sorted(items)
        voice_dirs, model_dirs = _voice_dirs(pending), _model_dirs(pending)
        stems = _day_unique_stems(pending)
        flats = _flat_counters(pending, stems, voice_dirs)
        return {
            p.item_id: Placement(voice_dirs[p.voice_key], p.day, stem, p.ext, model_dirs[p.model_key], flat)
            for p, stem, flat in zip(pending, stems, flats)
        }

    def _pending_sorted(self, items: Iterable[Placeable]) -> list[_Pending]:
        ordered = sorted(items, key=lambda it: (int(it.date_unix), it.history_item_id))
        days: dict[str, str] = {}  # interns day strings: 100k placements share a few hundred
        exts: dict[str | None, str] = {}  # content type -> extension, computed once per type
        seen: set[str] = set()
        pending = []
        for item in ordered:
            if item.history_item_id not in seen:
                seen.add(item.history_item_id)
                pending.append(self._pending(item, days, exts))
        return pending

    def _pending(self, item: Placeable, days: dict[str, str], exts: dict[str | None, str]) -> _Pending:
        when = datetime.fromtimestamp(min(max(int(item.date_unix), _MIN_TS), _MAX_TS), self._tz).isoformat()
        day = when[:10]  # isoformat pads the year to 4 digits: "YYYY-MM-DDTHH:MM:SS+hh:mm"
        ext = exts.get(item.content_type) or exts.setdefault(item.content_type, extension_for(item.content_type))
        return _Pending(
            item.history_item_id,
            voice_key(item),
            item.voice_name,
            model_key(item),
            days.setdefault(day, day),
            when[11:19].replace(":", "-"),  # "HH-MM-SS"
            stem_text(item.display_text or ""),
            ext,
        )


def _day_unique_stems(pending: list[_Pending]) -> list[str]:
    """Stems for items in (date, id) order, unique ignoring case within each day (so within every
    folder of every view: by-model and the flat views mix voices)."""
    stems = [_stem(p, 0, 0) for p in pending]
    seen: set[tuple[str, str]] = set()
    clashing: dict[str, list[int]] = {}
    for i, p in enumerate(pending):
        key = (p.day, stems[i].casefold())
        if key in seen:
            clashing[p.day] = []
        seen.add(key)
    if not clashing:  # the common case: one pass, no per-day work
        return stems
    for i, p in enumerate(pending):
        members = clashing.get(p.day)
        if members is not None:
            members.append(i)
    for members in clashing.values():
        names = _unique_names(len(members), lambda j, e, c: _stem(pending[members[j]], e, c))
        for i, name in zip(members, names):
            stems[i] = name
    return stems


def _flat_counters(pending: list[_Pending], stems: list[str], voice_dirs: dict[str, str]) -> list[int]:
    """Each item's flat-name counter: 0, except for an item whose flat name equals (ignoring case) an
    older item's. Only items of one second can collide (a flat name starts with its date and time)."""
    counters = [0] * len(pending)
    first: dict[tuple[str, str], int] = {}  # (day, time) -> the first item of that second
    shared: dict[tuple[str, str], list[int]] = {}  # seconds of several items -> those items
    for i, p in enumerate(pending):
        key = (p.day, p.clock)
        if (j := first.setdefault(key, i)) != i:
            shared.setdefault(key, [j]).append(i)

    def namer(i: int, counter: int) -> str:
        return flat_stem(pending[i].day, stems[i], voice_dirs[pending[i].voice_key], counter)

    for members in shared.values():
        _count_clashes(members, namer, counters)
    return counters


def _count_clashes(members: list[int], namer: Callable[[int, int], str], counters: list[int]) -> None:
    bases = [namer(i, 0).casefold() for i in members]
    used, seen = set(bases), set()
    for i, base in zip(members, bases):
        if base in seen:
            counter = 1
            while (name := namer(i, counter).casefold()) in used:
                counter += 1
            used.add(name)
            counters[i] = counter
        seen.add(base)


def _voice_dirs(pending: list[_Pending]) -> dict[str, str]:
    """Voice key -> folder name, unique ignoring case across all voices."""
    names: dict[str, str] = {}
    for p in pending:  # oldest first: the oldest item names its voice, even without a name (stability)
        if p.voice_key not in names:
            names[p.voice_key] = clean_chars(p.voice_name or "").rstrip(" .")
    keys = sorted(names)
    labels = [_PSEUDO_DIRS.get(k) or names[k] for k in keys]
    dirs = _unique_names(
        len(keys), lambda i, e, c: _voice_dir(keys[i], labels[i], e, c), lambda i: keys[i] in _PSEUDO_DIRS
    )
    return dict(zip(keys, dirs))


def _model_dirs(pending: list[_Pending]) -> dict[str, str]:
    """Model key -> folder name, unique ignoring case across all models ("Unknown model" keeps its name)."""
    keys = sorted({p.model_key for p in pending})
    dirs = _unique_names(len(keys), lambda i, e, c: _model_dir(keys[i], e, c), lambda i: not keys[i])
    return dict(zip(keys, dirs))
