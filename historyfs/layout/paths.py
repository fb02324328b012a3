"""Views, kinds of file and path names: where an item's files appear, given its ``Placement`` (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .clean import STEM_MAX_BYTES, blen, fit

BY_DATE, BY_MODEL, BY_VOICE = "by-date", "by-model", "by-voice"
RECENT, SEARCH = "recent", "search"
#: Views whose items sit three folders deep (``<view>/<a>/<b>/<c>/<file>``), built from the listing.
TREE_VIEWS = (BY_DATE, BY_MODEL, BY_VOICE)
#: Flat views: ``recent/<file>`` (the newest items) and ``search/<words>/<file>`` (an API search).
FLAT_VIEWS = (RECENT, SEARCH)
#: Every view, in the order the root lists them.
VIEWS = TREE_VIEWS + FLAT_VIEWS
#: How many items recent/ holds unless told otherwise (``--recent N``).
RECENT_DEFAULT = 100
#: The files of one item: its own audio, its metadata sidecar, and optionally its audio as WAV.
AUDIO, SIDECAR, WAV = "audio", "sidecar", "wav"
KINDS = (AUDIO, SIDECAR, WAV)
SIDECAR_EXT = ".json"
WAV_EXT = ".wav"
#: The mount's hidden control folder and the live statistics file in it.
CONTROL_DIR = ".historyfs"
STATS_FILE = "stats.json"
UNKNOWN_MODEL_DIR = "Unknown model"
#: Between the voice and the stem in a flat view's names.
FLAT_SEPARATOR = " - "
#: A flat name keeps at least this much of its voice folder when its stem is extremely long.
FLAT_VOICE_MIN_BYTES = 24


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one item lives, in every view."""

    voice_dir: str
    day: str  # "YYYY-MM-DD"
    stem: str  # "HH-MM-SS text start [id8]"
    ext: str  # ".mp3"
    model_dir: str = UNKNOWN_MODEL_DIR
    flat: int = 0  # the counter that tells apart colliding flat names (almost always 0)

    @property
    def month(self) -> str:
        return self.day[:7]

    def dir_parts(self, view: str) -> tuple[str, str, str]:
        return dir_parts(view, self.voice_dir, self.day, self.model_dir)

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
        """The file name of one kind in a tree view: "audio", "sidecar" or "wav"."""
        return file_name(self.stem, self.ext, kind)

    @property
    def flat_stem(self) -> str:
        """The stem in recent/ and search/ folders (see ``flat_stem``)."""
        return flat_stem(self.day, self.stem, self.voice_dir, self.flat)

    def flat_name(self, kind: str = AUDIO) -> str:
        return file_name(self.flat_stem, self.ext, kind)

    def relpath(self, view: str, kind: str = AUDIO) -> str:
        """The path below the mount; ``view`` is a view, or for search/ the query's folder ("search/hello")."""
        if view.partition("/")[0] in FLAT_VIEWS:
            return f"{view}/{self.flat_name(kind)}"
        return "/".join((view, *self.dir_parts(view), self.name(kind)))

    def paths(self, kinds: Iterable[str], views: Iterable[str] = TREE_VIEWS) -> Iterator[str]:
        """The mount paths ("/by-date/...") of the item's files of these kinds in ``views`` (search/ excluded:
        its folders are queries, see ``relpath``); a recent/ path is given whether or not the item is that new."""
        for view in views:
            if view != SEARCH:
                for kind in kinds:
                    yield "/" + self.relpath(view, kind)

    def folder_paths(self, views: Iterable[str] = TREE_VIEWS) -> Iterator[str]:
        """The mount paths of the folders holding the item in ``views``, the root and the views included."""
        yield "/"
        for view in views:
            parts = (view, *self.dir_parts(view)) if view in TREE_VIEWS else (view,)
            for depth in range(1, len(parts) + 1):
                yield "/" + "/".join(parts[:depth])

    def under(self, view: str, parts: tuple[str, ...] | list[str]) -> bool:
        """True if the item is inside tree-view folder ``view/parts...`` (exact names)."""
        return view in TREE_VIEWS and tuple(parts) == self.dir_parts(view)[: len(parts)]


def dir_parts(view: str, voice_dir: str, day: str, model_dir: str = UNKNOWN_MODEL_DIR) -> tuple[str, str, str]:
    """The folders below tree view ``view`` that hold an item of this voice folder, day and model folder."""
    if view == BY_VOICE:
        return (voice_dir, day[:7], day)
    if view == BY_DATE:
        return (day[:7], day, voice_dir)
    if view == BY_MODEL:
        return (model_dir, day[:7], day)
    raise ValueError(f"not a tree view: {view!r}")


def file_depth(view: str) -> int:
    """How many components a file's path has in ``view``: by-*/<3 folders>/f, recent/f, search/<words>/f."""
    return 2 if view == RECENT else 3 if view == SEARCH else 5


def file_name(stem: str, ext: str, kind: str) -> str:
    """An item's file name of one kind, from its stem and its audio extension."""
    if kind == AUDIO:
        return stem + ext
    if kind == SIDECAR:
        return stem + SIDECAR_EXT
    if kind == WAV:
        return stem + WAV_EXT
    raise ValueError(f"unknown file kind {kind!r}")


def flat_stem(day: str, stem: str, voice_dir: str, counter: int = 0) -> str:
    """An item's stem in recent/ and search/: "2026-11-30 14-03-27 Rachel - Welcome back [ja9xsmfG]".

    The day and the time come first, so names sort in time order; then the voice folder, then the
    stem of the other views without its time. To fit 255 bytes the voice part is cut (and, only for
    ids of dozens of bytes, the stem's end); ``counter`` ("~N" after the voice) tells apart the rare
    names that still collide (``Layout`` sets it; only items of the same second can collide).
    """
    clock, rest = stem[:8], stem[9:]
    tag = f"~{counter}" if counter else ""
    room = STEM_MAX_BYTES - len(day) - len(clock) - 2 - len(FLAT_SEPARATOR) - len(tag)
    if blen(rest) > room - FLAT_VOICE_MIN_BYTES:
        rest = fit(rest, room - FLAT_VOICE_MIN_BYTES).rstrip()
    voice = fit(voice_dir, room - blen(rest)).rstrip()
    return f"{day} {clock} {voice}{tag}{FLAT_SEPARATOR}{rest}"


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
