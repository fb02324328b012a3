"""What each path of the mount names: the root, the views it shows and the control folder (no attributes, no FUSE).

Owns the namespace: which views a mount shows (``--views``); resolving path components to a
``Node`` (a folder, or an item's file of one kind) over the index's tree views and recent/, and
over search/ (``search.Searches``: looking up search/<words> may run an API search); what a
folder lists (tree folders by name, recent/ and a search's folder newest first); what a
sequential reader of a folder opens next; and every path an item's files and folders have in the
shown views (what the kernel must be told when the item leaves or moves).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .index import Index
from .layout import AUDIO, CONTROL_DIR, FLAT_VIEWS, SEARCH, STATS_FILE, TREE_VIEWS, Placement, file_depth, item_kinds, split_name
from .search import Searches
from .tree import Folder, Slim, flat_after


class Node(NamedTuple):
    """What a path names: a folder, an item file, a control file or a ghost (a tuple: built on every lookup)."""

    parts: tuple[str, ...]
    folder: Folder | None = None
    slim: Slim | None = None
    kind: str = ""  # AUDIO / SIDECAR / WAV for item files, "control" for control files
    ghost: Any = None  # the attributes of a name a delete removed (removal.Removals)


class Views:
    """The namespace of one mount: ``shown`` views over ``index`` (and ``searches`` for search/)."""

    def __init__(self, index: Index, shown: Iterable[str], searches: Searches | None = None, wav: bool = False) -> None:
        self.index, self.searches, self.wav = index, searches, wav
        shown = set(shown)
        self.shown = tuple(v for v in (*TREE_VIEWS, *FLAT_VIEWS) if v in shown and (v != SEARCH or searches))
        self.trees = tuple(v for v in self.shown if v in TREE_VIEWS)  # the tree views, listing order

    def kinds(self, slim: Slim) -> tuple[str, ...]:
        return item_kinds(slim.ext, self.wav)

    # -- resolution -------------------------------------------------------------------------
    def lookup(self, parts: tuple[str, ...]) -> Node | None:
        """The node at ``parts`` (() is the root), or None. A search/<words> lookup may search."""
        if parts[:1] == (CONTROL_DIR,):
            if len(parts) == 1:
                return Node(parts, folder=Folder())
            return Node(parts, kind="control") if parts[1:] == (STATS_FILE,) else None
        if parts and parts[0] not in self.shown:
            return None
        if len(parts) > 1 and len(parts) == file_depth(parts[0]):
            return self._file(parts)
        folder = self.folder(parts)
        return Node(parts, folder=folder) if folder is not None else None

    def folder(self, parts: tuple[str, ...]) -> Folder | None:
        """The folder at ``parts``; a search/<words> folder is that search's results."""
        if parts[:1] == (SEARCH,) and self.searches is not None:
            if len(parts) == 1:
                return self.searches.root()
            return self.searches.results(parts[1]) if len(parts) == 2 else None
        return self.index.folder(parts)

    def _file(self, parts: tuple[str, ...]) -> Node | None:
        parent = self.folder(parts[:-1])
        if parent is None:
            return None
        for key, kind, ext in split_name(parts[-1], self.wav):
            s = parent.files.get(key)
            if s is not None and (s.ext == ext if kind == AUDIO else kind in self.kinds(s)):
                return Node(parts, slim=s, kind=kind)
        return None

    def is_view(self, parts: tuple[str, ...]) -> bool:
        """True for a path inside a view that lists the index's items (a missed name there may be new)."""
        return bool(parts) and parts[0] in self.shown and parts[0] != SEARCH

    # -- listing ----------------------------------------------------------------------------
    def listing(self, parts: tuple[str, ...], folder: Folder) -> tuple[list[tuple[str, Folder]], list[tuple[str, Slim]], bool]:
        """A folder's (sub-folder name, folder) and (stem, item) pairs, and whether they are in the
        folder's own order (recent/ and search results: newest first) rather than to be sorted by name."""
        if not parts:
            return [(v, self.folder((v,)) or Folder()) for v in self.shown] + [(CONTROL_DIR, Folder())], [], False
        dirs, files = self.index.names(folder)
        return [(d, folder.dirs.get(d) or Folder()) for d in dirs], files, parts[0] in FLAT_VIEWS

    def following(self, parts: tuple[str, ...], slim: Slim, n: int) -> list[Slim]:
        """Up to ``n`` items after ``slim`` in the order a recursive copy of its folder reads them."""
        if parts[0] == SEARCH:
            return flat_after(self.folder(parts[:-1]), slim.flat_stem, n)
        return self.index.following(parts[0], slim, n)

    # -- every path of an item (what to tell the kernel) -------------------------------------
    def item_paths(self, place: Placement, kinds: Iterable[str]) -> list[str]:
        """The paths of the item's files of ``kinds`` in every shown view (search/ included)."""
        kinds = tuple(kinds)
        paths = list(place.paths(kinds, self.shown))
        if self.searches is not None and SEARCH in self.shown:
            paths += self.searches.paths_of([place])
        return paths

    def folder_paths(self, place: Placement) -> list[str]:
        """The paths of the folders holding the item in every shown view (the root included)."""
        return list(place.folder_paths(v for v in self.shown if v != SEARCH))
