"""The thin fusepy adapter: one call into ``core.HistoryFS`` per FUSE operation, errors mapped once.

Owns the translation of ``historyfs.errors`` and ``OSError`` into errno values (``fuse_errors``),
of ``core.Attr`` into fusepy's stat dicts (nanoseconds: ``use_ns``), and of ``raw_fi`` file info
structs (``fi.fh``, ``fi.keep_cache``, ``fi.direct_io``). Every change the mount does not support
answers EROFS (read-only mount) or EPERM, never fusepy's EINVAL fallback.
"""

from __future__ import annotations

import errno
import functools
import logging
import stat
from collections.abc import Callable
from typing import Any, TypeVar

from fuse import FuseOSError, Operations

from .core import Attr, HistoryFS
from .errors import AuthError, HistoryFSError, NotFound, Unavailable

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_NS = 1_000_000_000
#: d_type for readdir; d_ino stays libfuse's "unknown" (0xffffffff) as without use_ino: GNU cp sorts a
#: folder by d_ino, and hashed numbers would scramble the name order the read-ahead recognises.
_DIR = {"st_mode": stat.S_IFDIR, "st_ino": 0xFFFFFFFF}
_FILE = {"st_mode": stat.S_IFREG, "st_ino": 0xFFFFFFFF}


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

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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
    t = a.mtime * _NS
    return {"st_mode": a.mode, "st_size": a.size, "st_ino": a.ino, "st_nlink": a.nlink, "st_uid": a.uid,
            "st_gid": a.gid, "st_mtime": t, "st_atime": t, "st_ctime": t, "st_blocks": (a.size + 511) // 512,
            "st_blksize": 65536}


def _fh(fi: Any) -> int | None:
    """The handle number from a raw fuse_file_info (None for a NULL pointer or no struct)."""
    return int(fi.fh) if fi else None


class FuseOps(Operations):  # type: ignore[misc]
    """fusepy Operations over a HistoryFS; ``on_init`` runs in FUSE init (after the mount is live)."""

    use_ns = True

    def __init__(self, fs: HistoryFS, on_init: Callable[[], None] = lambda: None,
                 on_destroy: Callable[[], None] = lambda: None) -> None:
        self.fs, self._on_init, self._on_destroy = fs, on_init, on_destroy

    def init(self, path: str) -> None:
        try:
            self._on_init()
        except Exception:
            log.exception("mount start-up failed")

    def destroy(self, path: str) -> None:
        self._on_destroy()

    @fuse_errors
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        return stat_dict(self.fs.getattr(path, _fh(fh)))

    @fuse_errors
    def readdir(self, path: str, fh: Any) -> list[tuple[str, dict[str, int], int]]:
        """Names with their type, so `find -type f` and `ls` need no stat per entry (d_type)."""
        return [(name, _DIR if is_dir else _FILE, 0) for name, is_dir, _ in self.fs.entries(path)]

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

