"""Which items a folder names (pure): `--path` selections, recent/'s newest items, search/'s query names.

Probe names: file managers and shells look up names of their own in every folder they open; under
search/ those lookups must not become API searches. ``PROBE_NAMES`` lists the ones seen in the
wild, compared ignoring case; every name starting with "." is a probe too (``.hidden`` and
``.xdg-volume-info``: GIO/Nautilus; ``.directory``: KDE Dolphin; ``.DS_Store``, ``._*``,
``.Spotlight-V100``, ``.Trashes``: macOS Finder; ``.Trash-<uid>``: the freedesktop trash spec;
``.git``: shell prompts). Sources: gvfs's ``gvfsmountinfo.c`` (``autorun.inf``, looked up
ignoring case), Nautilus's autorun check (``autorun``, ``autorun.sh``, ``.autorun``), Windows
Explorer over SMB (``desktop.ini``, ``Thumbs.db``, ``folder.jpg``/``.gif``, ``AlbumArtSmall.jpg``,
``$RECYCLE.BIN``, ``RECYCLER``, ``System Volume Information``), music players' cover-art lookups
(``cover.jpg``, ``front.jpg``, ``AlbumArt*.jpg``), gvfs's Blu-ray probe (``BDMV``).
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from collections.abc import Iterable
from typing import Protocol, TypeVar

from ..errors import ConfigError
from .paths import BY_DATE, RECENT, SEARCH, VIEWS

PROBE_NAMES = frozenset(name.casefold() for name in (
    "autorun.inf", "autorun", "autorun.sh", "desktop.ini", "thumbs.db", "folder.jpg", "folder.gif",
    "albumartsmall.jpg", "albumart.jpg", "$recycle.bin", "recycler", "system volume information",
    "cover.jpg", "cover.png", "front.jpg", "bdmv",
))  # fmt: skip

_MONTH_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])\Z")
_DAY_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\Z")


class Dated(Protocol):
    @property
    def history_item_id(self) -> str: ...
    @property
    def date_unix(self) -> int: ...


D = TypeVar("D", bound=Dated)


def newest(items: Iterable[D], n: int) -> list[D]:
    """recent/'s items: the ``n`` newest, newest first (date, then id: a total order)."""
    return heapq.nlargest(n, items, key=lambda it: (it.date_unix, it.history_item_id)) if n > 0 else []


def is_probe(name: str) -> bool:
    """True for names file managers and shells look up by themselves (see the module docstring)."""
    folded = name.casefold()
    return name.startswith(".") or folded in PROBE_NAMES or (folded.startswith("albumart") and folded.endswith(".jpg"))


def search_query(name: str) -> str | None:
    """The words folder ``search/<name>`` searches for, or None when the name is not a query:
    a probe name, blank, or not valid UTF-8 (a name from a non-UTF-8 client)."""
    if is_probe(name) or not name.strip():
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name


def split_selection(path: str) -> tuple[str, tuple[str, ...]]:
    """"by-voice/Rachel/2026-11" -> ("by-voice", ("Rachel", "2026-11")); ConfigError if not a folder.

    Flat views: "recent" -> ("recent", ()); "search/hello world" -> ("search", ("hello world",)).
    """
    if path.startswith("/"):
        raise ConfigError(f"path {path!r} must be relative to the mount, like by-voice/Rachel/2026-11")
    parts = [unicodedata.normalize("NFC", p) for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"path {path!r} must not contain '..'")
    if not parts or parts[0] not in VIEWS:
        raise ConfigError(f"path {path!r} must start with {', '.join(VIEWS[:-1])} or {VIEWS[-1]}")
    view, rest = parts[0], tuple(parts[1:])
    if view in (RECENT, SEARCH):
        _check_flat(path, view, rest)
        return view, rest
    if len(rest) > 3:
        raise ConfigError(f"path {path!r} is too deep: a {view} folder has at most 3 levels")
    _check_dates(path, view, rest)
    return view, rest


def _check_flat(path: str, view: str, rest: tuple[str, ...]) -> None:
    if view == RECENT and rest:
        raise ConfigError(f"path {path!r}: recent has no sub-folders (use just recent)")
    if view == SEARCH and (len(rest) != 1 or search_query(rest[0]) is None):
        raise ConfigError(f"path {path!r}: name the words of one search, like search/welcome back "
                          "(names starting with '.' and the names file managers probe are not searches)")


def _check_dates(path: str, view: str, rest: tuple[str, ...]) -> None:
    month_at = 0 if view == BY_DATE else 1
    month = rest[month_at] if len(rest) > month_at else None
    day = rest[month_at + 1] if len(rest) > month_at + 1 else None
    if month is not None and not _MONTH_RE.match(month):
        raise ConfigError(f"path {path!r}: {month!r} is not a month folder (YYYY-MM)")
    if day is not None and not (_DAY_RE.match(day) and month is not None and day.startswith(month)):
        raise ConfigError(f"path {path!r}: {day!r} is not a day folder of {month} (YYYY-MM-DD)")
