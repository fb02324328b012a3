"""The thin FUSE adapter: one call into ``core.HistoryFS`` per FUSE operation, errors mapped once.

Owns the translation of ``historyfs.errors`` and ``OSError`` into errno values (``fuse_errors``),
of ``core.Attr`` into stat dicts (nanoseconds: ``use_ns``), of ``raw_fi`` file info structs
(``fi.fh``, ``fi.keep_cache``, ``fi.direct_io``), the paging of listings by offset
(``readdir_page``, attributes included: see ``binding``), and FUSE init: what the kernel is
asked for (no automatic data invalidation) and the ``binding.Kernel`` the core tells of changes.
Every change the mount does not support answers EROFS (read-only mount) or EPERM, never EINVAL.

Speed: every FUSE request that reaches Python is a round trip (~30 us), so the adapter keeps
the number small. Attributes and entries are cached by the kernel (libfuse 3; see mount.py),
listings carry attributes, and operations whose answer is a constant are not registered at all
(libfuse answers them in C, or the kernel stops asking after one ENOSYS); without ``--xattrs``
getxattr is not registered either, so the kernel's first ENOSYS stops the per-file
security.selinux and POSIX ACL probes of `ls -l` (listxattr, which `ls` does not call, answers
an empty list, so `rsync -X` and `cp -a` see "no attributes", not an error). Each libfuse worker
thread keeps its Python thread state (``ThreadStates``) instead of creating one per request.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cachetools import LRUCache

from .binding import CACHES_LISTINGS, CAP_AUTO_INVAL_DATA, FuseOSError, Kernel, Operations
from .core import Attr, HistoryFS
from .errors import AuthError, HistoryFSError, NotFound, Unavailable
from .stats import Counters

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_NS = 1_000_000_000
#: Entries without attributes (a clip of unknown size, ".."): the type, and d_ino "unknown" as libfuse
#: gives without use_ino (glibc's readdir skips an entry whose d_ino is 0).
_DIR = {"st_mode": stat.S_IFDIR, "st_ino": 0xFFFFFFFF}
_FILE = {"st_mode": stat.S_IFREG, "st_ino": 0xFFFFFFFF}

#: Operations the mfusepy base class answers with a constant: left out of the op table so they never
#: reach Python (libfuse answers opendir/releasedir itself; for the others the kernel's first ENOSYS
#: means "always succeed" and it stops sending them). ``access`` too: the kernel checks permissions
#: itself from the modes (``default_permissions``), so `test -x` is false on 0444 files.
_CONSTANT_OPS = ("access", "flush", "fsync", "fsyncdir", "releasedir", "ioctl", "readlink") + (
    () if CACHES_LISTINGS else ("opendir",))  # with libfuse >= 3.16 opendir asks the kernel to keep listings
#: Registered only with --xattrs.
_XATTR_OPS = ("getxattr",)
#: Folders whose listing is kept between the pages of one `readdir` (a page holds ~20-100 entries).
LISTINGS_KEPT = 64
#: Entries handed to libfuse per readdir request: more than a kernel buffer holds (32 KiB of entries of
#: at least 32 bytes), so each request fills one, without building the whole rest of a big folder each time.
PAGE_MAX = 1024
#: Most libfuse worker threads whose Python thread state is kept at once (~20 KB each).
MAX_KEPT_THREAD_STATES = 64
#: Shortest time between two sweeps for the kept states of threads that have ended.
REAP_INTERVAL = 1.0

_api = ctypes.pythonapi
_api.PyThreadState_Get.restype = ctypes.c_void_p
_api.PyThreadState_Clear.argtypes = [ctypes.c_void_p]
_api.PyThreadState_Delete.argtypes = [ctypes.c_void_p]


class ThreadStates:
    """Keep one Python thread state per libfuse worker thread instead of one per request.

    A ctypes callback on a thread Python did not start creates a thread state on entry and
    destroys it on exit (``PyGILState_Ensure``/``Release``): a gettid, mmap and munmap per FUSE
    request, measured at 15-20 us of a 35 us `stat` round trip. One extra ``PyGILState_Ensure``
    on the thread, never released, keeps its state for the next requests (pybind11 does the same).
    Workers that end (libfuse 2 ends idle ones beyond 10) have their states freed by a sweep
    (``reap``: their /proc/self/task entry is gone), and at most ``limit`` are kept at once.
    Python's own threads are never touched: Python frees their state when they end.
    """

    def __init__(self, limit: int = MAX_KEPT_THREAD_STATES) -> None:
        self._local = threading.local()  # lives in the thread state, so it survives only if kept
        self._lock = threading.Lock()
        self._kept: dict[int, int] = {}  # PyThreadState* -> native thread id; guarded by _lock
        self._limit = limit
        self._last_reap = 0.0  # guarded by _lock

    def keep(self) -> None:
        """Keep the calling thread's state (cheap when already kept: one attribute read)."""
        if getattr(self._local, "kept", False):
            return
        self._local.kept = True
        if threading.get_ident() in threading._active:  # type: ignore[attr-defined]  # a Python thread
            return
        with self._lock:
            if len(self._kept) >= self._limit and time.monotonic() - self._last_reap >= REAP_INTERVAL:
                self._reap_locked()
            if len(self._kept) < self._limit:
                _api.PyGILState_Ensure()
                self._kept[int(_api.PyThreadState_Get())] = threading.get_native_id()

    def reap(self) -> int:
        """Free the kept states of threads that have ended; returns how many."""
        with self._lock:
            return self._reap_locked()

    def _reap_locked(self) -> int:
        self._last_reap = time.monotonic()
        ended = [ts for ts, tid in self._kept.items() if not os.path.exists(f"/proc/self/task/{tid}")]
        for ts in ended:
            del self._kept[ts]
            _api.PyThreadState_Clear(ts)
            _api.PyThreadState_Delete(ts)
        return len(ended)

    def __len__(self) -> int:
        return len(self._kept)


_thread_states = ThreadStates()


def kept_thread_states() -> int:
    """How many libfuse worker threads keep their Python thread state (for stats.json)."""
    _thread_states.reap()
    return len(_thread_states)


def errno_of(exc: BaseException) -> int:
    """The errno a failure becomes at the FUSE boundary."""
    if isinstance(exc, FuseOSError | OSError) and exc.errno and exc.errno > 0:
        return int(exc.errno)
    if isinstance(exc, NotFound):
        return errno.ENOENT
    if isinstance(exc, AuthError):
        return errno.EACCES
    return errno.EIO


def fuse_errors(func: F) -> F:
    """Map every exception of an operation to an errno (unexpected ones are logged with a traceback)."""

    name = func.__name__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _thread_states.keep()
        args[0].counters.add(name)
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise FuseOSError(errno_of(exc)) from None
        except (NotFound, AuthError, Unavailable) as exc:
            log.info("%s%r: %s", func.__name__, args[1:2], exc)
            raise FuseOSError(errno_of(exc)) from None
        except HistoryFSError as exc:
            log.warning("%s%r: %s", func.__name__, args[1:2], exc)
            raise FuseOSError(errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s%r", func.__name__, args[1:2])
            raise FuseOSError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def stat_dict(a: Attr) -> dict[str, int]:
    """fusepy's stat dict of an ``Attr``."""
    t = a.mtime * _NS
    return {"st_mode": a.mode, "st_size": a.size, "st_ino": a.ino, "st_nlink": a.nlink, "st_uid": a.uid,
            "st_gid": a.gid, "st_mtime": t, "st_atime": t, "st_ctime": t, "st_blocks": (a.size + 511) // 512,
            "st_blksize": 65536}


def _listed(a: Attr | None) -> dict[str, int]:
    """What a listing says of an entry: full attributes for a file whose size is known, else its type.

    Folders go without attributes (one lookup each, then cached) so that their d_ino is libfuse's
    "unknown": GNU `cp -r` visits a folder's entries in d_ino order, and with hashed numbers it would
    walk the tree in an order the read-ahead cannot follow. Files keep their inode (hard-link checks).
    """
    if a is None:
        return _FILE
    return _DIR if stat.S_ISDIR(a.mode) else stat_dict(a)


def _fh(fi: Any) -> int | None:
    """The handle number from a raw fuse_file_info (None for a NULL pointer or no struct)."""
    return int(fi.fh) if fi else None


class FuseOps(Operations):  # type: ignore[misc]
    """Operations over a HistoryFS; ``on_init`` runs in FUSE init (after the mount is live)."""

    use_ns = True

    def __init__(self, fs: HistoryFS, on_init: Callable[[], None] = lambda: None,
                 on_destroy: Callable[[], None] = lambda: None, counters: Counters | None = None) -> None:
        self.fs, self._on_init, self._on_destroy = fs, on_init, on_destroy
        self.counters = counters if counters is not None else Counters()  # calls by operation
        self.kernel = Kernel()
        self._listings: LRUCache[str, list[tuple[str, dict[str, int]]]] = LRUCache(LISTINGS_KEPT)
        self._listings_lock = threading.Lock()
        for name in _CONSTANT_OPS + (() if fs.opts.xattrs else _XATTR_OPS):
            setattr(self, name, None)  # mfusepy registers only what getattr(ops, name) finds

    def init_with_config(self, conn: Any, config: Any) -> None:
        try:
            if conn is not None:
                conn.want &= ~CAP_AUTO_INVAL_DATA
            self.kernel.attach()
            self.fs.notify = self.kernel
            self._on_init()
        except Exception:
            log.exception("mount start-up failed")

    def destroy(self, path: str) -> None:
        self.kernel.detach()
        self._on_destroy()

    @fuse_errors
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        return stat_dict(self.fs.getattr(path, _fh(fh)))

    def opendir(self, path: str) -> int:
        """Registered only where the kernel can keep listings (see ``binding.FUSE.opendir``)."""
        self.counters.add("opendir")
        return 0

    @fuse_errors
    def readdir(self, path: str, fh: Any) -> list[str]:
        """Names only (mfusepy's plain form; the binding calls ``readdir_page``)."""
        return self.fs.readdir(path)

    @fuse_errors
    def readdir_page(self, path: str, offset: int) -> list[tuple[str, dict[str, int], int]]:
        """The entries from ``offset`` on, each with the offset of the next: the listing is made at
        offset 0 and kept for the next pages of the same folder."""
        with self._listings_lock:
            listing = self._listings.get(path) if offset else None
        if listing is None:
            listing = [(name, _listed(a)) for name, a in self.fs.entries(path)]
            with self._listings_lock:
                self._listings[path] = listing
        page = listing[offset : offset + PAGE_MAX]  # the kernel asks again from where its buffer filled
        return [(name, attrs, i) for i, (name, attrs) in enumerate(page, offset + 1)]

    @fuse_errors
    def open(self, path: str, fi: Any) -> int:
        opened = self.fs.open(path, fi.flags)
        fi.fh, fi.keep_cache, fi.direct_io = opened.fh, int(opened.keep_cache), int(opened.direct_io)
        return 0

    @fuse_errors
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        return self.fs.read(int(fi.fh), size, offset)

    @fuse_errors
    def release(self, path: str, fi: Any) -> int:
        self.fs.release(int(fi.fh))
        return 0

    @fuse_errors
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return self.fs.getxattr(path, name)

    @fuse_errors
    def listxattr(self, path: str) -> list[str]:
        return self.fs.listxattr(path)

    @fuse_errors
    def statfs(self, path: str) -> dict[str, int]:
        return self.fs.statfs()

    @fuse_errors
    def unlink(self, path: str) -> None:
        self.fs.unlink(path)

    @fuse_errors
    def rmdir(self, path: str) -> None:
        self.fs.rmdir(path)

    @fuse_errors
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self.fs.refuse(path)
        return 0

    @fuse_errors
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        self.fs.refuse(path)
        return 0

    @fuse_errors
    def truncate(self, path: str, length: int, fh: Any = None) -> None:
        self.fs.refuse(path)

    @fuse_errors
    def refuse(self, path: str, *args: Any) -> None:
        self.fs.refuse(path)

    @fuse_errors
    def refuse_link(self, target: str, source: str) -> None:
        self.fs.refuse(target)

    chmod = chown = mkdir = mknod = setxattr = removexattr = utimens = refuse
    rename = symlink = link = refuse_link
