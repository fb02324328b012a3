"""PURE mapping between history items and paths: folder scheme, file names, sanitising, collisions.

No I/O, no clock, no mutable globals: the same items and time zone always give the same paths,
on every machine. The mount and the exporters both use it, so an S3 key and a mount path agree.

Scheme (MONTH = YYYY-MM, DAY = YYYY-MM-DD, in the chosen time zone):
    by-voice/<voice>/<MONTH>/<DAY>/<stem><ext>
    by-date/<MONTH>/<DAY>/<voice>/<stem><ext>
with the metadata sidecar ``<stem>.json`` beside each audio file, and optionally ``<stem>.wav``.
``<stem>`` is ``HH-MM-SS <start of text> [<item id prefix>]``.

Rules (decided here, relied on by the mount and the exporters):
- Names are NFC, valid UTF-8, at most 255 bytes (every stem leaves room for a 5-byte extension),
  never "", "." or "..". Control characters (C0, DEL, C1, U+2028/2029) become spaces, bidi
  controls, BOM and lone surrogates are dropped, whitespace runs collapse to one space, "/"
  becomes "／" (U+FF0F, as rclone does). "\\" and ":" are kept: they are legal on Linux.
  Leading dots are kept; trailing dots and spaces are stripped.
- Voice folder: the cleaned voice name of the voice's OLDEST item (so a later rename, or a newer
  item that brings a name, does not move older files); dialogue items go to "Dialogue", items
  without voice id or name to "Unknown voice". A voice with an id but no name is
  "Unknown voice (<id6>)". When several voice keys get names equal ignoring case (clients on
  macOS/SMB fold case), each member of the group except a pseudo-voice
  gets " (<first 6 chars of voice id>)" (voices known only by name: 6 hex chars of sha256(name));
  if that is still ambiguous the group's suffixes grow one character at a time, then get "~N".
- Stems: unique per folder ignoring case. Colliding items (same second, same text start, same id
  prefix) all get a longer id part, one character at a time, then "~N" in (date, id) order.
- Stability: an item's path depends only on itself, its voice's oldest name and the items sharing its
  folder. Adding an item changes another item's path only if it creates a new collision (its name
  equals, ignoring case, a name already there or a lengthened one) or it is older than every
  earlier item of its voice and names that voice differently.
- Time: HH-MM-SS is wall-clock time, so stems sort in time order within a day except in the hour a
  DST fall-back repeats. Dates are clamped to 0001-01-03 .. 9999-12-29 UTC (negative ok).
- A native ".wav" item's optional wav file IS its audio file: ``audio_name("wav") == audio_name()``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from .errors import ConfigError

#: The folder views of the tree, in the order they are listed.
VIEWS = ("by-date", "by-voice")
#: The files of one item: its own audio, its metadata sidecar, and optionally its audio as WAV.
AUDIO, SIDECAR, WAV = "audio", "sidecar", "wav"
KINDS = (AUDIO, SIDECAR, WAV)
SIDECAR_EXT = ".json"
WAV_EXT = ".wav"
#: The mount's hidden control folder and the live statistics file in it.
CONTROL_DIR = ".historyfs"
STATS_FILE = "stats.json"
NAME_MAX_BYTES = 255
#: Bytes every stem leaves free for its extension (".opus", ".flac", ".json" are the longest).
MAX_EXT_BYTES = 5
TEXT_SOURCE_CHARS = 100  # only this much of display_text is ever read (the mount keeps 200)
TEXT_CHARS = 40
TEXT_MIN_WORD_CUT = 20  # cut at a space only if that keeps at least this many characters
ID_CHARS = 8
ID_MAX_BYTES = 64  # cap for the id part, so the text always keeps room
VOICE_ID_CHARS = 6
NO_TEXT = "(no text)"
DIALOGUE_DIR = "Dialogue"
UNKNOWN_VOICE_DIR = "Unknown voice"
DIALOGUE_KEY = "dialogue"
UNKNOWN_KEY = "unknown"
_PSEUDO_DIRS = {DIALOGUE_KEY: DIALOGUE_DIR, UNKNOWN_KEY: UNKNOWN_VOICE_DIR}

_EXTENSIONS = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
    "audio/ogg": ".ogg", "audio/opus": ".opus", "audio/flac": ".flac", "audio/aac": ".aac",
    "audio/mp4": ".m4a", "audio/basic": ".pcm", "audio/pcm": ".pcm", "audio/l16": ".pcm",
}  # fmt: skip
UNKNOWN_EXT = ".bin"

_TO_SPACE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TO_DROP = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_MONTH_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])\Z")
_DAY_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\Z")
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
    def is_dialogue(self) -> bool: ...
    @property
    def display_text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one item lives. Small on purpose: the mount holds one per item."""

    voice_dir: str
    day: str  # "YYYY-MM-DD"
    stem: str  # "HH-MM-SS text start [id8]"
    ext: str  # ".mp3"

    @property
    def month(self) -> str:
        return self.day[:7]

    def dir_parts(self, view: str) -> tuple[str, str, str]:
        return dir_parts(view, self.voice_dir, self.day)

    def audio_name(self, fmt: str | None = None) -> str:
        if fmt is None:
            return self.stem + self.ext
        if fmt == "wav":
            return self.stem + WAV_EXT
        raise ValueError(f"unknown audio format {fmt!r}")

    @property
    def sidecar_name(self) -> str:
        return self.stem + SIDECAR_EXT

    def name(self, kind: str = AUDIO) -> str:
        """The file name of one kind: "audio", "sidecar" or "wav"."""
        return file_name(self.stem, self.ext, kind)

    def relpath(self, view: str, kind: str = AUDIO) -> str:
        return "/".join((view, *self.dir_parts(view), self.name(kind)))

    def paths(self, kinds: Iterable[str]) -> Iterator[str]:
        """The mount paths ("/by-date/...") of the item's files of these kinds, in every view."""
        for view in VIEWS:
            for kind in kinds:
                yield "/" + self.relpath(view, kind)

    def folder_paths(self) -> Iterator[str]:
        """The mount paths of the folders holding the item in every view, the root and views included."""
        yield "/"
        for view in VIEWS:
            parts = (view, *self.dir_parts(view))
            for depth in range(1, len(parts) + 1):
                yield "/" + "/".join(parts[:depth])

    def under(self, view: str, parts: tuple[str, ...] | list[str]) -> bool:
        """True if the item is inside folder ``view/parts...`` (exact names)."""
        return view in VIEWS and tuple(parts) == self.dir_parts(view)[: len(parts)]


def dir_parts(view: str, voice_dir: str, day: str) -> tuple[str, str, str]:
    """The folders below ``view`` that hold an item of this voice folder and day."""
    if view == "by-voice":
        return (voice_dir, day[:7], day)
    if view == "by-date":
        return (day[:7], day, voice_dir)
    raise ValueError(f"unknown view {view!r}")


def file_name(stem: str, ext: str, kind: str) -> str:
    """An item's file name of one kind, from its stem and its audio extension."""
    if kind == AUDIO:
        return stem + ext
    if kind == SIDECAR:
        return stem + SIDECAR_EXT
    if kind == WAV:
        return stem + WAV_EXT
    raise ValueError(f"unknown file kind {kind!r}")


def item_kinds(ext: str, wav: bool) -> tuple[str, ...]:
    """The kinds of file an item shows: audio and sidecar, plus WAV when asked for and not native."""
    return (AUDIO, SIDECAR, WAV) if wav and ext != WAV_EXT else (AUDIO, SIDECAR)


def split_name(name: str, wav: bool) -> list[tuple[str, str, str | None]]:
    """The (stem, kind, audio extension or None) readings of a file name; a caller checks the stem.

    "a.json" -> [("a", SIDECAR, None)], "a.wav" -> [("a", WAV, None), ("a", AUDIO, ".wav")] with
    ``wav``, "a.mp3" -> [("a", AUDIO, ".mp3")]. The extension of an audio reading must equal the item's.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot:
        return []
    readings: list[tuple[str, str, str | None]] = []
    if "." + ext == SIDECAR_EXT:
        readings.append((stem, SIDECAR, None))
    if wav and "." + ext == WAV_EXT:
        readings.append((stem, WAV, None))
    readings.append((stem, AUDIO, "." + ext))
    return readings


def cache_key(item_id: str, ext: str, kind: str = AUDIO) -> str:
    """The disk-cache key of an item's audio bytes: "<id>.mp3" (its own), "<id>.wav" (as WAV)."""
    return item_id + (WAV_EXT if kind == WAV else ext)


def cache_keys(item_id: str, ext: str) -> tuple[str, ...]:
    """Every cache key an item may have (what to forget when it goes)."""
    return tuple(dict.fromkeys((cache_key(item_id, ext), cache_key(item_id, ext, WAV))))


def extension_for(content_type: str | None) -> str:
    """".mp3" for "audio/mpeg" etc.; parameters ignored, case-insensitive; unknown -> ".bin"."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(mime, UNKNOWN_EXT)


# ---------------------------------------------------------------- cleaning


def _clean_chars(text: str) -> str:
    """NFC, no control/bidi/surrogate chars, "/" -> "／", whitespace collapsed and trimmed."""
    if not (text.isascii() and text.isprintable()):
        text = _TO_DROP.sub("", _TO_SPACE.sub(" ", text))
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.replace("/", "\uff0f").split())


def _fit(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes on a character boundary."""
    if len(text) * 4 <= max_bytes:
        return text
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max(max_bytes, 0)].decode("utf-8", "ignore")  # a prefix of NFC text stays NFC


def _blen(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def clean_component(text: str, fallback: str, *, max_bytes: int = NAME_MAX_BYTES) -> str:
    """One safe path component of at most ``max_bytes`` bytes; ``fallback`` if nothing is left.

    ``max_bytes`` (an extension of the interface) lets callers reserve room for a suffix.
    """
    for candidate in (text, fallback, "_"):
        name = _fit(_clean_chars(candidate or ""), max_bytes).rstrip(" .")
        if name:
            return name
    return "_"[:max_bytes]


def stem_text(display_text: str) -> str:
    """The text part of a stem: the first ~40 characters, cut at a word boundary when possible."""
    text = _clean_chars(display_text[:TEXT_SOURCE_CHARS])
    if len(text) > TEXT_CHARS:
        cut = text.rfind(" ", 0, TEXT_CHARS + 1)
        text = text[:cut] if cut >= TEXT_MIN_WORD_CUT else text[:TEXT_CHARS].rstrip()
    return text or NO_TEXT


# ---------------------------------------------------------------- selections


def split_selection(path: str) -> tuple[str, tuple[str, ...]]:
    """"by-voice/Rachel/2026-11" -> ("by-voice", ("Rachel", "2026-11")); ConfigError if not a folder."""
    if path.startswith("/"):
        raise ConfigError(f"path {path!r} must be relative to the mount, like by-voice/Rachel/2026-11")
    parts = [unicodedata.normalize("NFC", p) for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"path {path!r} must not contain '..'")
    if not parts or parts[0] not in VIEWS:
        raise ConfigError(f"path {path!r} must start with {' or '.join(VIEWS)}")
    view, rest = parts[0], tuple(parts[1:])
    if len(rest) > 3:
        raise ConfigError(f"path {path!r} is too deep: a {view} folder has at most 3 levels")
    _check_dates(path, view, rest)
    return view, rest


def _check_dates(path: str, view: str, rest: tuple[str, ...]) -> None:
    month_at = 1 if view == "by-voice" else 0
    month = rest[month_at] if len(rest) > month_at else None
    day = rest[month_at + 1] if len(rest) > month_at + 1 else None
    if month is not None and not _MONTH_RE.match(month):
        raise ConfigError(f"path {path!r}: {month!r} is not a month folder (YYYY-MM)")
    if day is not None and not (_DAY_RE.match(day) and month is not None and day.startswith(month)):
        raise ConfigError(f"path {path!r}: {day!r} is not a day folder of {month} (YYYY-MM-DD)")


# ---------------------------------------------------------------- placement


def voice_key(item: Placeable) -> str:
    """voice_id, else "name:<voice_name>", else the pseudo-voices "dialogue" / "unknown"."""
    if item.is_dialogue:
        return DIALOGUE_KEY
    if item.voice_id:
        return item.voice_id
    return f"name:{item.voice_name}" if item.voice_name else UNKNOWN_KEY


@dataclass(slots=True)
class _Pending:
    """One item's pieces while place_all works (dropped afterwards)."""

    item_id: str
    voice_key: str
    voice_name: str | None
    day: str
    clock: str
    text: str
    ext: str


def _id_part(raw: str, length: int, counter: int) -> str:
    """The first ``length`` characters of an id, cleaned and capped, plus "~counter" if any."""
    part = raw[:length]
    if not (part.isalnum() and part.isascii()):  # real ids are; skip the work for them
        part = _fit(_clean_chars(part), ID_MAX_BYTES)
    return f"{part}~{counter}" if counter else part


def _stem(p: _Pending, extra: int, counter: int) -> str:
    tail = f" [{_id_part(p.item_id, ID_CHARS + extra, counter)}]"
    budget = NAME_MAX_BYTES - MAX_EXT_BYTES - len(p.clock) - 1 - _blen(tail)
    return f"{p.clock} {_fit(p.text, budget).rstrip() or '_'}{tail}"


def _voice_dir(key: str, name: str, extra: int, counter: int) -> str:
    """A voice folder; ``name`` "" means the voice has an id but no name (always suffixed)."""
    if not name:
        name, extra = UNKNOWN_VOICE_DIR, max(extra, 1)
    if extra == 0 and counter == 0:
        return clean_component(name, UNKNOWN_VOICE_DIR)
    disc = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest() if key.startswith("name:") else key
    suffix = f" ({_id_part(disc, VOICE_ID_CHARS - 1 + extra, counter)})"
    return clean_component(name, UNKNOWN_VOICE_DIR, max_bytes=NAME_MAX_BYTES - _blen(suffix)) + suffix


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
    """Places items in the folder scheme for one time zone (see the module docstring)."""

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz  # read-only

    def place_all(self, items: Iterable[Placeable]) -> dict[str, Placement]:
        """Every item's Placement by id; the same set of items gives the same result in any order."""
        pending = self._pending_sorted(items)
        voice_dirs = _voice_dirs(pending)
        stems = _folder_unique_stems(pending)
        return {
            p.item_id: Placement(voice_dirs[p.voice_key], p.day, stem, p.ext) for p, stem in zip(pending, stems)
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
            days.setdefault(day, day),
            when[11:19].replace(":", "-"),  # "HH-MM-SS"
            stem_text(item.display_text or ""),
            ext,
        )


def _folder_unique_stems(pending: list[_Pending]) -> list[str]:
    """Stems for items in (date, id) order, unique ignoring case within each (voice, day) folder."""
    stems = [_stem(p, 0, 0) for p in pending]
    seen: set[tuple[str, str, str]] = set()
    clashing: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(pending):
        key = (p.voice_key, p.day, stems[i].casefold())
        if key in seen:
            clashing[(p.voice_key, p.day)] = []
        seen.add(key)
    if not clashing:  # the common case: one pass, no per-folder work
        return stems
    for i, p in enumerate(pending):
        members = clashing.get((p.voice_key, p.day))
        if members is not None:
            members.append(i)
    for members in clashing.values():
        names = _unique_names(len(members), lambda j, e, c: _stem(pending[members[j]], e, c))
        for i, name in zip(members, names):
            stems[i] = name
    return stems


def _voice_dirs(pending: list[_Pending]) -> dict[str, str]:
    """Voice key -> folder name, unique ignoring case across all voices."""
    names: dict[str, str] = {}
    for p in pending:  # oldest first: the oldest item names its voice, even without a name (stability)
        if p.voice_key not in names:
            names[p.voice_key] = _clean_chars(p.voice_name or "").rstrip(" .")
    keys = sorted(names)
    labels = [_PSEUDO_DIRS.get(k) or names[k] for k in keys]
    dirs = _unique_names(
        len(keys), lambda i, e, c: _voice_dir(keys[i], labels[i], e, c), lambda i: keys[i] in _PSEUDO_DIRS
    )
    return dict(zip(keys, dirs))
