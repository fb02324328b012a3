"""HistoryFS: the mount's path-level operations (stat, list, open, read, unlink...) with no FUSE import.

Owns attributes (modes, inode numbers, exact sizes, mtimes) of what ``views.Views`` resolves (the
views the mount shows, the hidden control folder ``/.historyfs/``), open file handles, the size
contract and the delete policy (``removal.Removals``). A size the kernel is told is exact:
a stat of a clip whose size is unknown learns it first (``Fetcher.learn_size``) and starts
learning its folder's other unknown sizes (``readahead.FolderScout``); with ``--sizes lazy`` it
answers 0 until an open learns it. Whatever the mount learns that the kernel may hold stale (a
size told as 0, an item deleted, added or moved) it tells the kernel through ``Notifier``.
Raises ``OSError(errno)`` for filesystem answers and lets the ``historyfs.errors`` tree through.
Concurrency: ``_lock`` guards the handle table; it is a leaf.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .deletes import DeleteJournal
from .errors import fail
from .fetcher import Fetch, Fetcher
from .index import Changes, Folder, Index, Slim
from .layout import CONTROL_DIR as CONTROL, SIDECAR, STATS_FILE, VIEWS, WAV, cache_key, file_name, item_kinds
from .readahead import FolderScout, ReadAhead
from .removal import Removals
from .search import Searches
from .views import Node, Views

#: statfs's block size (what `df` counts in).
BLOCK = 4096
XATTR_PREFIX = "user.historyfs."
#: xattr name (after the prefix) -> item JSON field; "kind" (audio/sidecar/wav) is added.
XATTR_FIELDS = {"item_id": "history_item_id", "voice": "voice_name", "voice_id": "voice_id", "model": "model_id",
                "text": "text", "source": "source", "date_unix": "date_unix", "kind": ""}


@dataclass(frozen=True, slots=True)
class Options:
    """What the user chose at mount time that changes what the tree shows or allows."""

    read_only: bool = False
    allow_delete: bool = False
    wav: bool = False  # --formats includes wav
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    xattrs: bool = False  # --xattrs: user.historyfs.* extended attributes (costs `ls -l` two round trips a file)
    lazy_sizes: bool = False  # --sizes lazy: 0 until an open learns the size (no download for a stat)
    views: tuple[str, ...] = VIEWS  # --views (recent/ left out with --recent 0)


class Attr(NamedTuple):
    """A stat result (seconds for times; the adapter converts). A tuple: built on every getattr."""

    mode: int
    size: int
    mtime: int
    ino: int
    nlink: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Opened:
    fh: int
    keep_cache: bool
    direct_io: bool


class Reader(Protocol):
    def read(self, offset: int, n: int) -> bytes: ...

    def close(self) -> None: ...


class Notifier(Protocol):
    """Tells the kernel to drop what it caches of a path (attributes, pages); a no-op where it cannot."""

    live: bool

    def invalidate(self, path: str) -> None: ...


class NoNotifier:
    live = False

    def invalidate(self, path: str) -> None:
        pass


class BytesReader:
    """A handle on bytes generated at open (sidecars, control files)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]

    def close(self) -> None:
        pass


@dataclass(slots=True)
class Handle:
    reader: Any  # BytesReader, or a fetcher Blob for audio
    key: str | None  # cache key while pinned (audio), else None
    node: Node
    size: int | None  # None: audio of unknown length still arriving


def ino_of(name: str) -> int:
    """A stable 63-bit inode number for a name (never 0 or 1, which are reserved)."""
    n = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1
    return n if n > 1 else n + 2


class HistoryFS:
    """The filesystem, path by path. ``stats`` builds stats.json; ``on_miss`` refreshes (bounded);
    ``searches`` answers search/ (no search/ without it)."""

    def __init__(self, index: Index, fetcher: Fetcher, deletes: DeleteJournal | None, options: Options,
                 stats: Callable[[], bytes] = lambda: b"{}\n", on_miss: Callable[[], bool] | None = None,
                 notify: Notifier | None = None, searches: Searches | None = None) -> None:
        self.index, self.fetcher, self.opts = index, fetcher, options
        self._stats, self._on_miss = stats, on_miss
        self.notify: Notifier = notify or NoNotifier()
        self.views = Views(index, options.views, searches, options.wav)
        if searches is not None:
            searches.tell = self.tell_kernel
        self.readahead = ReadAhead(fetcher.prefetch)
        self.scout = FolderScout(fetcher.learn_later)
        self.removals = Removals(self, deletes)
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}  # guarded by _lock
        self._fh = itertools.count(1)  # guarded by _lock
        writable = options.allow_delete and not options.read_only
        self._file_mode = stat.S_IFREG | ((0o644 if writable else 0o444) & ~options.umask)
        self._dir_mode = stat.S_IFDIR | ((0o755 if writable else 0o555) & ~options.umask)
        index.on_change = self.tree_changed

    # -- resolution -----------------------------------------------------------------------
    def resolve(self, path: str) -> Node:
        parts = tuple(path[1:].split("/")) if path.startswith("/") and "//" not in path and path != "/" \
            else tuple(p for p in path.split("/") if p)  # FUSE paths are "/a/b": the first form
        node = self._lookup(parts)
        if node is None and self._on_miss is not None and self.views.is_view(parts) and self._on_miss():
            node = self._lookup(parts)
        if node is None:
            ghost = self.removals.ghost(path)
            if ghost is not None:
                return Node(parts, ghost=ghost)
            raise fail(errno.ENOENT, path)
        return node

    def _lookup(self, parts: tuple[str, ...]) -> Node | None:
        node = self.views.lookup(parts)
        if node is not None and node.slim is not None and self.removals.hidden(node.slim.history_item_id, node.kind):
            return None
        return node

    def kinds(self, slim: Slim) -> tuple[str, ...]:
        return self.views.kinds(slim)

    @staticmethod
    def job_of(slim: Slim, kind: str) -> Fetch:
        return Fetch(cache_key(slim.history_item_id, slim.ext, kind), slim.history_item_id, "wav" if kind == WAV else None)

    # -- attributes -----------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> Attr:
        if fh is not None:
            with self._lock:
                handle = self._handles.get(fh)
            if handle is not None:
                return self._file_attr(handle.node, self._handle_size(handle))
        node = self.resolve(path)
        if node.ghost is not None:
            return node.ghost  # type: ignore[no-any-return]
        if node.folder is not None:
            return self.dir_attr(node.parts, node.folder)
        return self._file_attr(node, self._size(node))

    def dir_attr(self, parts: tuple[str, ...], f: Folder) -> Attr:
        mtime = f.mtime if parts[:1] != (CONTROL,) else self.index.root.mtime
        return Attr(self._dir_mode, 0, mtime, ino_of("d:" + "/".join(parts)), 2 + len(f.dirs),
                    self.opts.uid, self.opts.gid)

    def _file_attr(self, node: Node, size: int) -> Attr:
        if node.slim is None:  # control file
            return Attr(stat.S_IFREG | (0o444 & ~self.opts.umask), size, self.index.root.mtime,
                        ino_of("c:" + "/".join(node.parts)), 1, self.opts.uid, self.opts.gid)
        return self.item_attr(node.slim, node.kind, size)

    def item_attr(self, slim: Slim, kind: str, size: int) -> Attr:
        return Attr(self._file_mode, size, slim.date_unix, ino_of(f"{slim.history_item_id}:{kind}"),
                    len(self.views.trees) or 1, self.opts.uid, self.opts.gid)

    def known_size(self, slim: Slim, kind: str) -> int | None:
        """The size if known without any I/O (a listing may carry it), else None."""
        if kind == SIDECAR:
            return slim.sidecar_size if slim.sidecar_size >= 0 else None
        known = self.index.size(cache_key(slim.history_item_id, slim.ext, kind))
        return 0 if known is None and self.opts.lazy_sizes else known

    def _size(self, node: Node) -> int:
        """The exact size of a file, learned now when unknown (the size contract; see the module doc)."""
        slim, kind = node.slim, node.kind
        if slim is None:
            return 0  # control files are generated at open (direct_io)
        if kind == SIDECAR:
            return self.index.sidecar_size(slim)
        known = self.known_size(slim, kind)
        if known is not None:
            return known
        parts = node.parts[:-1]
        self.scout.first_unknown(parts, lambda: self._unknown_in(parts, kind))
        return self.fetcher.learn_size(self.job_of(slim, kind))

    def _unknown_in(self, parts: tuple[str, ...], kind: str) -> list[Fetch]:
        """The folder's clips of unknown size, in name order (the order `ls -l` and tar stat them)."""
        folder = self.views.folder(parts)
        if folder is None:
            return []
        stems = sorted(self.index.names(folder)[1])
        return [self.job_of(s, kind) for _, s in stems if self.known_size(s, kind) is None]

    def _handle_size(self, handle: Handle) -> int:
        if handle.size is None:
            handle.size = handle.reader.size(self.fetcher.deadline)
        return handle.size

    # -- listing --------------------------------------------------------------------------
    def readdir(self, path: str) -> list[str]:
        return [name for name, _ in self.entries(path)]

    def entries(self, path: str) -> list[tuple[str, Attr | None]]:
        """A folder's (name, attributes if known without I/O): ".", "..", then sorted by name.

        A clip of unknown size comes without attributes, so that only a stat of it learns the size.
        """
        node = self.resolve(path)
        if node.folder is None:
            if node.ghost is not None and stat.S_ISDIR(node.ghost.mode):
                return [(".", node.ghost), ("..", None)]
            raise fail(errno.ENOTDIR, path)
        here = self.dir_attr(node.parts, node.folder) if node.ghost is None else node.ghost
        dirs, files, ordered = self.views.listing(node.parts, node.folder)
        named = [(d, self.dir_attr((*node.parts, d), sub)) for d, sub in dirs]
        if node.parts == (CONTROL,):
            named.append((STATS_FILE, None))
        named += self._files(files)
        if not ordered:
            named.sort(key=lambda e: e[0])
        return [(".", here), ("..", None), *named]

    def _files(self, files: list[tuple[str, Slim]]) -> list[tuple[str, Attr | None]]:
        """Each item's files, named from the folder's key (its stem, or in a flat folder its flat stem)."""
        out: list[tuple[str, Attr | None]] = []
        for key, slim in files:
            for kind in self.kinds(slim):
                if not self.removals.hidden(slim.history_item_id, kind):
                    size = self.known_size(slim, kind)
                    out.append((file_name(key, slim.ext, kind), None if size is None else self.item_attr(slim, kind, size)))
        return out

    # -- xattrs ---------------------------------------------------------------------------
    def listxattr(self, path: str) -> list[str]:
        """The names, without reading the item; none without ``--xattrs``."""
        node = self.resolve(path)
        return [XATTR_PREFIX + k for k in XATTR_FIELDS] if node.slim is not None and self.opts.xattrs else []

    def getxattr(self, path: str, name: str) -> bytes:
        if not self.opts.xattrs:
            raise fail(errno.ENOTSUP, path)
        node = self.resolve(path)
        if node.slim is None or not name.startswith(XATTR_PREFIX):  # e.g. ACL and SELinux probes: no I/O
            raise fail(errno.ENODATA, path)
        value = self._xattrs(node).get(name[len(XATTR_PREFIX):])
        if value is None:
            raise fail(errno.ENODATA, path)
        return value.encode()

    def _xattrs(self, node: Node) -> dict[str, str]:
        assert node.slim is not None
        raw = self.index.sidecar(node.slim.history_item_id) or b"{}"
        item: dict[str, Any] = json.loads(raw)
        out = {k: str(item[v]) for k, v in XATTR_FIELDS.items() if item.get(v) not in (None, "")}
        out["kind"] = node.kind
        return out

    # -- open / read / release ------------------------------------------------------------
    def open(self, path: str, flags: int) -> Opened:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise self.refusal(path)
        node = self.resolve(path)
        if node.folder is not None or (node.ghost is not None and stat.S_ISDIR(node.ghost.mode)):
            raise fail(errno.EISDIR, path)
        if node.ghost is not None:
            raise fail(errno.ENOENT, path)  # its item is gone: nothing to read
        if node.slim is None:
            data = self._stats()
            return self._add_handle(Handle(BytesReader(data), None, node, len(data)), keep_cache=False, direct_io=True)
        if node.kind == SIDECAR:
            data = self.index.sidecar(node.slim.history_item_id)
            if data is None:
                raise fail(errno.ENOENT, path)
            return self._add_handle(Handle(BytesReader(data), None, node, len(data)), keep_cache=True, direct_io=False)
        return self._open_audio(node)

    def _open_audio(self, node: Node) -> Opened:
        slim, kind = node.slim, node.kind
        assert slim is not None
        job = self.job_of(slim, kind)
        told_zero = self.opts.lazy_sizes and self.index.size(job.key) is None
        blob = self.fetcher.open(job)
        parts = node.parts
        self.readahead.opened(job.key, lambda n: [self.job_of(s, kind) for s in self.views.following(parts, slim, n)])
        size = blob.size() if blob.size_known else None
        if told_zero and size is not None:
            self.tell_kernel(self.views.item_paths(slim.placement, (kind,)))  # a stat said 0: the kernel must ask again
        opened = self._add_handle(Handle(blob, job.key, node, size), keep_cache=size is not None,
                                  direct_io=size is None)
        if size is None and told_zero:
            threading.Thread(target=self._tell_when_sized, args=(blob, slim, kind), daemon=True).start()
        return opened

    def _tell_when_sized(self, blob: Any, slim: Slim, kind: str) -> None:
        """A body of unknown length ended: the size the kernel was told (0) is stale now."""
        try:
            blob.size(self.fetcher.deadline)
        except Exception:  # the download failed: nothing learned, nothing to tell
            return
        self.tell_kernel(self.views.item_paths(slim.placement, (kind,)))

    def _add_handle(self, handle: Handle, *, keep_cache: bool, direct_io: bool) -> Opened:
        with self._lock:
            fh = next(self._fh)
            self._handles[fh] = handle
        return Opened(fh, keep_cache, direct_io)

    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self._handles.get(fh)  # one dict read is atomic: no lock on the hot path
        if handle is None:
            raise fail(errno.EBADF)
        return handle.reader.read(offset, size)  # type: ignore[no-any-return]

    def release(self, fh: int) -> None:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.key is not None:
            self.fetcher.close(handle.reader, handle.key)
        else:
            handle.reader.close()

    def open_handles(self) -> int:
        with self._lock:
            return len(self._handles)

    # -- changes ----------------------------------------------------------------------------
    def refusal(self, path: str) -> OSError:
        return fail(errno.EROFS if self.opts.read_only else errno.EPERM, path)

    def refuse(self, path: str, *_: object) -> None:
        """Every change the mount does not support (create, write, rename, chmod...)."""
        raise self.refusal(path)

    def unlink(self, path: str) -> None:
        self.removals.unlink(path)

    def rmdir(self, path: str) -> None:
        self.removals.rmdir(path)

    def tell_kernel(self, paths: Iterable[str]) -> None:
        """Drop what the kernel caches of these paths (attributes, entries' pages), if it can be told."""
        if self.notify.live:
            for path in dict.fromkeys(paths):
                self.notify.invalidate(path)

    def tree_changed(self, changes: Changes) -> None:
        """Items left places (removed, moved) or took new ones: their files and folders changed."""
        if not self.notify.live:
            return
        paths: list[str] = []
        for place in changes.left:
            paths += self.views.item_paths(place, item_kinds(place.ext, self.opts.wav))
        for place in (*changes.left, *changes.took):
            paths += self.views.folder_paths(place)
        self.tell_kernel(paths)

    def statfs(self) -> dict[str, int]:
        """What `df` shows: the disk cache's limit as the size, the room left under it as free space."""
        cache = self.fetcher.cache
        used, limit = cache.total_bytes(), cache.max_size  # type: ignore[attr-defined]
        blocks = -(-(used if limit is None else max(limit, used)) // BLOCK)  # no limit: just what is used
        free = 0 if limit is None else max(0, limit - used) // BLOCK
        files = len(self.index) * (2 + int(self.opts.wav))
        return {"f_bsize": BLOCK, "f_frsize": BLOCK, "f_blocks": blocks, "f_bfree": free, "f_bavail": free,
                "f_files": files, "f_ffree": 0, "f_favail": 0, "f_namemax": 255}
