"""The mount's in-memory tree: slim item records and the virtual folders of the views.

Owns the data structures ``index.Index`` builds, swaps and queries (``Slim``: one item, only what
a path, a stat and the layout need; ``Folder``: sub-folders and items by stem) and the pure
operations on them: inserting an item in a tree view, unlinking it (pruning emptied folders), a
flat folder of items (recent/, a search's results), and the walks the read-ahead uses. No locks
and no I/O: ``Index`` holds the locks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .layout import TEXT_SOURCE_CHARS, Placement, dir_parts, flat_stem
from .models import HistoryItem

__all__ = ["Folder", "Slim", "flat_after", "flat_folder", "insert", "intern_opt", "unlink", "walk_after"]
#: The layout never reads more than this much of display_text (memory: 100,000 items).
DISPLAY_TEXT_LIMIT = TEXT_SOURCE_CHARS


def intern_opt(s: str | None) -> str | None:
    """One shared copy of a repeated string (voice and model ids and names recur across 100,000 items)."""
    return sys.intern(s) if s is not None else None


@dataclass(slots=True, eq=False)
class Slim:
    """One item as the mount keeps it in RAM (also a ``layout.Placeable``)."""

    history_item_id: str
    date_unix: int
    content_type: str
    voice_id: str | None
    voice_name: str | None
    model_id: str | None
    is_dialogue: bool
    text_utf8: bytes  # the start of display_text, UTF-8: a third of a str's size for non-Latin text
    sidecar_size: int = -1  # len(item.to_json_bytes()) once the writer stored it; no I/O for a stat
    stem: str = ""
    ext: str = ""
    voice_dir: str = ""  # from the layout
    day: str = ""  # "YYYY-MM-DD", from the layout
    model_dir: str = ""  # from the layout
    flat: int = 0  # the flat-name counter, from the layout (almost always 0: a shared small int)

    @classmethod
    def of(cls, item: HistoryItem) -> Slim:
        return cls(
            item.history_item_id, item.date_unix, intern_opt(item.content_type) or "",
            intern_opt(item.voice_id), intern_opt(item.voice_name), intern_opt(item.model_id), item.is_dialogue,
            item.display_text[:DISPLAY_TEXT_LIMIT].encode(),
        )

    @property
    def display_text(self) -> str:
        return self.text_utf8.decode()

    def dir_parts(self, view: str) -> tuple[str, str, str]:
        return dir_parts(view, self.voice_dir, self.day, self.model_dir)

    @property
    def flat_stem(self) -> str:
        """The item's stem in recent/ and search/ (computed: the mount keeps only the tree stem)."""
        return flat_stem(self.day, self.stem, self.voice_dir, self.flat)

    @property
    def placement(self) -> Placement:
        """Where the item is now (a copy: it outlives a move or a removal)."""
        return Placement(self.voice_dir, self.day, self.stem, self.ext, self.model_dir, self.flat)


class Folder:
    """A virtual folder: sub-folders by name, items by stem, and the newest date below it."""

    __slots__ = ("dirs", "files", "mtime")

    def __init__(self) -> None:
        self.dirs: dict[str, Folder] = {}
        self.files: dict[str, Slim] = {}  # stem -> item (leaf folders only)
        self.mtime = 0

    def subdir(self, name: str) -> Folder:
        d = self.dirs.get(name)
        if d is None:
            d = self.dirs[name] = Folder()
        return d


def flat_folder(items: Iterable[Slim], mtime: int = 0) -> Folder:
    """A folder of ``items`` by flat stem, in the given order (recent/ and search/ list newest first)."""
    folder = Folder()
    for slim in items:
        folder.files[slim.flat_stem] = slim
        folder.mtime = max(folder.mtime, slim.date_unix)
    folder.mtime = folder.mtime or mtime
    return folder


def flat_after(folder: Folder | None, key: str, n: int) -> list[Slim]:
    """Up to ``n`` items after ``key`` in a flat folder's order (what `cp -r` of it reads next)."""
    if folder is None:
        return []
    keys = list(folder.files)
    try:
        at = keys.index(key)
    except ValueError:
        return []
    return [folder.files[k] for k in keys[at + 1 : at + 1 + n] if k in folder.files]


def insert(root: Folder, view: str, slim: Slim) -> None:
    """Put ``slim`` in ``view`` under ``root``, creating folders and raising their dates."""
    node = root.subdir(view)
    node.mtime = max(node.mtime, slim.date_unix)
    for name in slim.dir_parts(view):
        node = node.subdir(name)
        node.mtime = max(node.mtime, slim.date_unix)
    node.files[slim.stem] = slim
    root.mtime = max(root.mtime, slim.date_unix)


def unlink(root: Folder, view: str, slim: Slim) -> None:
    """Take ``slim`` out of ``view``; folders it leaves empty disappear, the others' dates follow."""
    chain = [root, root.dirs.get(view)]
    for name in slim.dir_parts(view):
        chain.append(chain[-1].dirs.get(name) if chain[-1] else None)
    leaf = chain[-1]
    if leaf is None or leaf.files.get(slim.stem) is not slim:
        return
    del leaf.files[slim.stem]
    names = (view, *slim.dir_parts(view))
    for depth in range(len(chain) - 1, 0, -1):
        folder, parent = chain[depth], chain[depth - 1]
        if folder is not None and parent is not None:
            if not folder.files and not folder.dirs and depth > 1:
                del parent.dirs[names[depth - 1]]
            else:
                folder.mtime = _newest(folder)


def _newest(folder: Folder) -> int:
    dates = [s.date_unix for s in folder.files.values()] + [d.mtime for d in folder.dirs.values()]
    return max(dates, default=0)


def walk_after(top: Folder | None, parts: tuple[str, ...], stem: str) -> Iterator[Slim]:
    """Items after (parts, stem) in sorted depth-first order (what `cp -r` and rsync do)."""
    if top is None:
        return
    if not parts:
        for s in sorted(top.files):
            if s > stem and s in top.files:
                yield top.files[s]
        return
    child = top.dirs.get(parts[0])
    if child is not None:
        yield from walk_after(child, parts[1:], stem)
    for name in sorted(top.dirs):
        if name > parts[0]:
            yield from _walk_all(top.dirs.get(name))


def _walk_all(folder: Folder | None) -> Iterator[Slim]:
    if folder is None:
        return
    for s in sorted(folder.files):
        yield folder.files[s]
    for name in sorted(folder.dirs):
        yield from _walk_all(folder.dirs.get(name))
