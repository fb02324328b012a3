"""What `rm` and `rmdir` do on the mount: the delete policy, names hidden this session, and ghosts.

Only ``unlink`` of an item's audio in a tree view (by-date, by-model, by-voice) changes anything
remotely: it deletes the item through the journal (``deletes.DeleteJournal``), from every view.
In recent/ and search/ every ``unlink`` is refused (EPERM): `rm -r search/<words>` would otherwise
delete everything a query matched; ``rmdir search/<words>`` forgets the query (``Searches.forget``).
``unlink`` of a sidecar or ``.wav`` hides that kind of that item for this mount session, in every
view. A delete leaves *ghosts*: the item's other names and the folders it emptied stay resolvable
(their last attributes, listed nowhere) until unlinked, so `rm -r` - which lists a folder, then
removes each name it saw - exits 0 in any order of removal under every ``--formats``, as it would
on a local disk. The deleted audio itself is gone
at once in every view. Concurrency: ``_lock`` guards the hidden set and the ghosts; a leaf.
"""

from __future__ import annotations

import errno
import threading
from typing import TYPE_CHECKING

from .errors import fail
from .layout import AUDIO, CONTROL_DIR, FLAT_VIEWS, SEARCH

if TYPE_CHECKING:
    from .core import Attr, HistoryFS
    from .deletes import DeleteJournal
    from .tree import Slim


class Removals:
    """unlink/rmdir for one ``HistoryFS``, with the session's hidden names and ghosts."""

    def __init__(self, fs: HistoryFS, deletes: DeleteJournal | None) -> None:
        self._fs, self._deletes = fs, deletes
        self._lock = threading.Lock()
        self._hidden: set[tuple[str, str]] = set()  # (item id, kind) unlinked this session; guarded
        self._ghosts: dict[str, Attr] = {}  # path -> last attributes of a name a delete removed; guarded

    def hidden(self, item_id: str, kind: str) -> bool:
        return bool(self._hidden) and (item_id, kind) in self._hidden

    def ghost(self, path: str) -> Attr | None:
        return self._ghosts.get(path) if self._ghosts else None

    def unlink(self, path: str) -> None:
        self._check_allowed(path)
        if self._take_ghost(path):
            return
        node = self._fs.resolve(path)
        if node.folder is not None:
            raise fail(errno.EISDIR, path)
        if node.slim is None or node.parts[0] in FLAT_VIEWS:
            raise fail(errno.EPERM, path)
        slim = node.slim
        if node.kind != AUDIO:  # a sidecar or .wav alone: hidden for this session, nothing remote
            with self._lock:
                self._hidden.add((slim.history_item_id, node.kind))
            names = self._fs.views.item_paths(slim.placement, (node.kind,))
            self._fs.tell_kernel([*names, *(n.rsplit("/", 1)[0] for n in names)])  # the names and their listings
            return
        assert self._deletes is not None
        ghosts = self._ghosts_of(slim, path)
        self._deletes.delete(slim.history_item_id)  # the index tells the kernel (HistoryFS.tree_changed)
        index = self._fs.index
        with self._lock:  # folders the delete emptied are ghosts; those still holding items are real
            self._ghosts.update({p: a for p, a in ghosts.items() if index.folder(_parts(p)) is None})

    def rmdir(self, path: str) -> None:
        self._check_allowed(path)
        if self._take_ghost(path):
            return
        node = self._fs.resolve(path)
        if node.folder is None:
            raise fail(errno.ENOTDIR, path)
        if len(node.parts) < 2 or node.parts[0] == CONTROL_DIR:
            raise fail(errno.EPERM, path)
        searches = self._fs.views.searches
        if node.parts[0] == SEARCH and searches is not None:
            searches.forget(node.parts[1])  # deletes nothing: the query is simply no longer listed
            return
        if len(self._fs.readdir(path)) > 2:
            raise fail(errno.ENOTEMPTY, path)

    def _check_allowed(self, path: str) -> None:
        opts = self._fs.opts
        if opts.read_only or not opts.allow_delete or self._deletes is None:
            raise self._fs.refusal(path)

    def _take_ghost(self, path: str) -> bool:
        with self._lock:
            return self._ghosts.pop(path, None) is not None

    def _ghosts_of(self, slim: Slim, removed: str) -> dict[str, Attr]:
        """The names an item's delete takes away besides ``removed``: its other files and its folders."""
        fs, place = self._fs, slim.placement
        ghosts: dict[str, Attr] = {}
        for view in fs.views.trees:
            parts = (view, *place.dir_parts(view))
            for depth in range(2, len(parts) + 1):
                folder = fs.index.folder(parts[:depth])
                if folder is not None:
                    ghosts["/" + "/".join(parts[:depth])] = fs.dir_attr(parts[:depth], folder)
        for kind in fs.kinds(slim):
            if kind != AUDIO and not self.hidden(slim.history_item_id, kind):
                attr = fs.item_attr(slim, kind, fs.known_size(slim, kind) or 0)
                ghosts.update(dict.fromkeys(place.paths((kind,), fs.views.trees), attr))
        ghosts.pop(removed, None)
        return ghosts


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)
