"""HistoryFS: the mount's path-level operations (stat, list, open, read, unlink...) with no FUSE import.

Owns path resolution over the index (``/by-date/...``, ``/by-voice/...``, the hidden control
folder ``/.historyfs/``), attributes (modes, inode numbers, sizes, mtimes), open file handles,
and the delete policy. Raises ``OSError(errno)`` for filesystem answers (ENOENT, EPERM, EROFS,
ENOTEMPTY...) and lets the ``historyfs.errors`` tree through for the adapter to map.
Concurrency: ``_lock`` guards the handle table, the hidden set and the tombstones; it is a leaf
(never held while calling the index, the fetcher or the API).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .deletes import DeleteJournal
from .fetcher import Fetch, Fetcher, ReadAhead
from .index import VIEWS, Folder, Index, Slim

CONTROL = ".historyfs"
STATS_FILE = "stats.json"
#: statfs's block size (what `df` counts in).
BLOCK = 4096
#: A view's items sit at view/<3 folders>/<file>.
FILE_DEPTH = 5
AUDIO, SIDECAR, WAV = "audio", "sidecar", "wav"
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
    size: int

    def read(self, offset: int, n: int) -> bytes: ...

    def close(self) -> None: ...


class BytesReader:
    """A handle on bytes generated at open (sidecars, control files)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]

    def close(self) -> None:
        pass


class Node(NamedTuple):
    """What a path names: a folder, an item file, or a control file (a tuple: built on every lookup)."""

    parts: tuple[str, ...]
    folder: Folder | None = None
    slim: Slim | None = None
    kind: str = ""  # AUDIO / SIDECAR / WAV for item files, "control" for control files


@dataclass(slots=True)
class Handle:
    reader: Reader
    key: str | None  # cache key while pinned (audio), else None
    node: Node


def ino_of(name: str) -> int:
    """A stable 63-bit inode number for a name (never 0 or 1, which are reserved)."""
    n = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1
    return n if n > 1 else n + 2


def fail(code: int, path: str = "") -> OSError:
    return OSError(code, os.strerror(code), path)


class HistoryFS:
    """The filesystem, path by path. ``stats`` builds stats.json; ``on_miss`` refreshes (bounded)."""

    def __init__(self, index: Index, fetcher: Fetcher, deletes: DeleteJournal | None, options: Options,
                 stats: Callable[[], bytes] = lambda: b"{}\n", on_miss: Callable[[], bool] | None = None) -> None:
        self.index, self.fetcher, self.deletes, self.opts = index, fetcher, deletes, options
        self._stats, self._on_miss = stats, on_miss
        self.readahead = ReadAhead(fetcher.prefetch)
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}  # guarded by _lock
        self._fh = itertools.count(1)  # guarded by _lock
        self._hidden: set[tuple[str, str]] = set()  # (item id, kind) unlinked this session; guarded
        self._tombstones: set[str] = set()  # paths of names deleted this session; guarded
        writable = options.allow_delete and not options.read_only
        self._file_mode = stat.S_IFREG | ((0o644 if writable else 0o444) & ~options.umask)
        self._dir_mode = stat.S_IFDIR | ((0o755 if writable else 0o555) & ~options.umask)

    # -- resolution -----------------------------------------------------------------------
    def resolve(self, path: str) -> Node:
        parts = tuple(path[1:].split("/")) if path.startswith("/") and "//" not in path and path != "/" \
            else tuple(p for p in path.split("/") if p)  # FUSE paths are "/a/b": the first form
        node = self._lookup(parts)
        if node is None and self._on_miss is not None and parts and parts[0] in VIEWS and self._on_miss():
            node = self._lookup(parts)
        if node is None:
            raise fail(errno.ENOENT, path)
        return node

    def _lookup(self, parts: tuple[str, ...]) -> Node | None:
        if parts and parts[0] == CONTROL:
            if len(parts) == 1:
                return Node(parts, folder=Folder())
            return Node(parts, kind="control") if parts[1:] == (STATS_FILE,) else None
        parent = self.index.folder(parts[:-1]) if parts else None
        folder = parent.dirs.get(parts[-1]) if parent is not None else self.index.root if not parts else None
        if folder is not None:
            return Node(parts, folder=folder)
        if parent is None or len(parts) != FILE_DEPTH or parts[0] not in VIEWS:
            return None
        found = self._file_in(parent, parts[-1])
        if found is None or (found[0].history_item_id, found[1]) in self._hidden:
            return None
        return Node(parts, slim=found[0], kind=found[1])

    def _file_in(self, folder: Folder, name: str) -> tuple[Slim, str] | None:
        if name.endswith(".json"):
            s = folder.files.get(name[:-5])
            if s is not None:
                return s, SIDECAR
        if self.opts.wav and name.endswith(".wav"):
            s = folder.files.get(name[:-4])
            if s is not None and s.ext != ".wav":
                return s, WAV
        stem, _, ext = name.rpartition(".")
        s = folder.files.get(stem)
        return (s, AUDIO) if s is not None and s.ext == "." + ext else None

    def _names(self, slim: Slim) -> list[tuple[str, str]]:
        names = [(slim.stem + slim.ext, AUDIO), (slim.stem + ".json", SIDECAR)]
        if self.opts.wav and slim.ext != ".wav":
            names.append((slim.stem + ".wav", WAV))
        return names

    @staticmethod
    def key_of(slim: Slim, kind: str) -> str:
        return slim.history_item_id + (".wav" if kind == WAV else slim.ext)

    # -- attributes -----------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> Attr:
        if fh is not None:
            with self._lock:
                handle = self._handles.get(fh)
            if handle is not None:
                return self._file_attr(handle.node, handle.reader.size)
        node = self.resolve(path)
        if node.folder is not None:
            return self._dir_attr(node)
        return self._file_attr(node, self._known_size(node))

    def _dir_attr(self, node: Node) -> Attr:
        f = node.folder
        assert f is not None
        mtime = f.mtime if node.parts[:1] != (CONTROL,) else self.index.root.mtime
        return Attr(self._dir_mode, 0, mtime, ino_of("d:" + "/".join(node.parts)), 2 + len(f.dirs),
                    self.opts.uid, self.opts.gid)

    def _file_attr(self, node: Node, size: int) -> Attr:
        if node.slim is None:  # control file
            return Attr(stat.S_IFREG | (0o444 & ~self.opts.umask), size, self.index.root.mtime,
                        ino_of("c:" + "/".join(node.parts)), 1, self.opts.uid, self.opts.gid)
        return Attr(self._file_mode, size, node.slim.date_unix, ino_of(f"{node.slim.history_item_id}:{node.kind}"),
                    len(VIEWS), self.opts.uid, self.opts.gid)

    def _known_size(self, node: Node) -> int:
        if node.slim is None:
            return 0  # control files are generated at open (direct_io)
        if node.kind == SIDECAR:
            return self.index.sidecar_size(node.slim)
        return self.index.size(self.key_of(node.slim, node.kind)) or 0

    # -- listing --------------------------------------------------------------------------
    def readdir(self, path: str) -> list[str]:
        return [name for name, _ in self.entries(path)]

    def entries(self, path: str) -> list[tuple[str, bool]]:
        """A folder's (name, is_folder): ".", "..", then sorted by name (d_type for free: no stat per entry)."""
        node = self.resolve(path)
        if node.folder is None:
            raise fail(errno.ENOTDIR, path)
        dirs = [*node.folder.dirs, CONTROL] if not node.parts else self.index.names(node.folder)[0]
        named = [(d, True) for d in dirs]
        if node.parts == (CONTROL,):
            named.append((STATS_FILE, False))
        elif node.parts:
            named += self._files(node.folder)
        named.sort()
        return [(".", True), ("..", True), *named]

    def _files(self, folder: Folder) -> list[tuple[str, bool]]:
        with self._lock:
            hidden = set(self._hidden)
        return [(n, False) for _, slim in self.index.names(folder)[1] for n, kind in self._names(slim)
                if not hidden or (slim.history_item_id, kind) not in hidden]

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
            raise self._refusal(path)
        node = self.resolve(path)
        if node.folder is not None:
            raise fail(errno.EISDIR, path)
        if node.slim is None:
            return self._add_handle(Handle(BytesReader(self._stats()), None, node), keep_cache=False, direct_io=True)
        if node.kind == SIDECAR:
            data = self.index.sidecar(node.slim.history_item_id)
            if data is None:
                raise fail(errno.ENOENT, path)
            return self._add_handle(Handle(BytesReader(data), None, node), keep_cache=True, direct_io=False)
        return self._open_audio(node)

    def _open_audio(self, node: Node) -> Opened:
        slim, kind = node.slim, node.kind
        assert slim is not None
        key = self.key_of(slim, kind)
        blob = self.fetcher.open(Fetch(key, slim.history_item_id, "wav" if kind == WAV else None))
        view = node.parts[0]
        self.readahead.opened(key, lambda n: [Fetch(self.key_of(s, kind), s.history_item_id, "wav" if kind == WAV else None)
                                              for s in self.index.following(view, slim, n)])
        return self._add_handle(Handle(blob, key, node), keep_cache=blob.complete, direct_io=False)

    def _add_handle(self, handle: Handle, *, keep_cache: bool, direct_io: bool) -> Opened:
        with self._lock:
            fh = next(self._fh)
            self._handles[fh] = handle
        return Opened(fh, keep_cache, direct_io)

    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self._handles.get(fh)  # one dict read is atomic: no lock on the hot path
        if handle is None:
            raise fail(errno.EBADF)
        return handle.reader.read(offset, size)

    def release(self, fh: int) -> None:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.key is not None:
            self.fetcher.close(handle.reader, handle.key)  # type: ignore[arg-type]
        else:
            handle.reader.close()

    def open_handles(self) -> int:
        with self._lock:
            return len(self._handles)

    # -- changes ----------------------------------------------------------------------------
    def _refusal(self, path: str) -> OSError:
        return fail(errno.EROFS if self.opts.read_only else errno.EPERM, path)

    def refuse(self, path: str, *_: object) -> None:
        """Every change the mount does not support (create, write, rename, chmod...)."""
        raise self._refusal(path)

    def _check_may_delete(self, path: str) -> None:
        if self.opts.read_only or not self.opts.allow_delete or self.deletes is None:
            raise self._refusal(path)

    def _deleted_already(self, path: str) -> bool:
        """Refuse when deletes are off; True when ``path`` went with an item this mount deleted."""
        self._check_may_delete(path)
        with self._lock:
            return path in self._tombstones

    def unlink(self, path: str) -> None:
        if self._deleted_already(path):
            return
        node = self.resolve(path)
        if node.folder is not None:
            raise fail(errno.EISDIR, path)
        if node.slim is None:
            raise fail(errno.EPERM, path)
        if node.kind != AUDIO:  # a sidecar or .wav alone: hidden for this session, nothing remote
            with self._lock:
                self._hidden.add((node.slim.history_item_id, node.kind))
            return
        assert self.deletes is not None
        self.deletes.delete(node.slim.history_item_id)
        self._bury(node.slim)

    def _bury(self, slim: Slim) -> None:
        """Remember every name the deleted item had, and the folders that emptied with it."""
        paths: set[str] = set()
        for view in VIEWS:
            dir_parts = (view, *slim.dir_parts(view))
            paths.update("/" + "/".join((*dir_parts, n)) for n, _ in self._names(slim))
            for depth in range(2, len(dir_parts) + 1):
                if self.index.folder(dir_parts[:depth]) is None:
                    paths.add("/" + "/".join(dir_parts[:depth]))
        with self._lock:
            self._tombstones |= paths

    def rmdir(self, path: str) -> None:
        if self._deleted_already(path):
            return
        node = self.resolve(path)
        if node.folder is None:
            raise fail(errno.ENOTDIR, path)
        if len(node.parts) < 2 or node.parts[0] == CONTROL:
            raise fail(errno.EPERM, path)
        if len(self.readdir(path)) > 2:
            raise fail(errno.ENOTEMPTY, path)

    def statfs(self) -> dict[str, int]:
        """What `df` shows: the disk cache's limit as the size, the room left under it as free space."""
        cache = self.fetcher.cache
        used, limit = cache.total_bytes(), cache.max_size  # type: ignore[attr-defined]
        blocks = -(-(used if limit is None else max(limit, used)) // BLOCK)  # no limit: just what is used
        free = 0 if limit is None else max(0, limit - used) // BLOCK
        files = len(self.index) * (2 + int(self.opts.wav))
        return {"f_bsize": BLOCK, "f_frsize": BLOCK, "f_blocks": blocks, "f_bfree": free, "f_bavail": free,
                "f_files": files, "f_ffree": 0, "f_favail": 0, "f_namemax": 255}
