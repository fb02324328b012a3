"""The FUSE binding: mfusepy over libfuse 3 when the machine has it, libfuse 2 otherwise.

Owns the choice of library (libfuse 3 first, found by itself; mfusepy's own FUSE_LIBRARY_PATH,
when set, wins - the tests use it for the libfuse 2 fallback) and what historyfs needs beyond
mfusepy's ``FUSE``:
- ``readdir`` that hands the kernel full attributes (readdirplus, libfuse 3) for the entries
  whose attributes are known, so `ls -l` of a listed folder needs no stat per entry. Every entry
  gets a non-zero offset: libfuse 3.14 drops the attributes of entries given with offset 0
  (fixed in 3.17.1) and would refuse to mix both kinds;
- ``Kernel``: telling the kernel that a path changed (``fuse_invalidate_path``, libfuse 3 only).
Nothing here knows history items; ``fuse_ops`` is the glue between this and ``core``.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterable
from typing import Any

from .libfuse import library_path


def _prefer_libfuse3() -> None:
    path = library_path()
    if path:
        os.environ["FUSE_LIBRARY_PATH"] = path


_prefer_libfuse3()
import mfusepy  # noqa: E402  (reads FUSE_LIBRARY_PATH when imported)

FUSE_MAJOR: int = mfusepy.fuse_version_major
FUSE_MINOR: int = mfusepy.fuse_version_minor
#: libfuse 3.16 passes an opendir's cache_readdir and keep_cache to the kernel (3.14 drops them), so
#: the kernel can keep a folder's listing between two `ls` and ask the mount nothing.
CACHES_LISTINGS = (FUSE_MAJOR, FUSE_MINOR) >= (3, 16)
LIBRARY: str = str(mfusepy._libfuse._name)
FuseOSError = mfusepy.FuseOSError
Operations = mfusepy.Operations

log = logging.getLogger(__name__)

#: readdir flag from the kernel: it wants attributes (libfuse 3 ``FUSE_READDIR_PLUS``).
READDIR_PLUS = 1 << 0
#: filler flag: this entry's attributes are valid (libfuse 3 ``FUSE_FILL_DIR_PLUS``).
FILL_DIR_PLUS = 1 << 1
#: d_ino of an entry whose inode number is not given (libfuse's FUSE_UNKNOWN_INO).
UNKNOWN_INO = 0xFFFFFFFF
#: Capability switched off: invalidating a file's pages whenever its mtime or size seem to change.
#: Items never change, and the mount tells the kernel itself when something did.
CAP_AUTO_INVAL_DATA = 1 << 12

if FUSE_MAJOR == 3:
    mfusepy._libfuse.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    mfusepy._libfuse.fuse_invalidate_path.restype = ctypes.c_int

#: One directory entry as ``readdir_page`` gives it: name, stat dict (or None: name and type only
#: through ``mode``), and the offset of the next entry.
Entry = tuple[str, "dict[str, int] | None", int]


class Kernel:
    """Tells the kernel what it caches of a path is stale (attributes, pages). No-op on libfuse 2."""

    def __init__(self) -> None:
        self._fuse: int | None = None
        self.live = False

    def attach(self) -> None:
        """Called in FUSE init, where the library's context is valid."""
        if FUSE_MAJOR == 3:
            self._fuse = mfusepy._libfuse.fuse_get_context().contents.fuse
            self.live = bool(self._fuse)

    def detach(self) -> None:
        self.live, self._fuse = False, None

    def invalidate(self, path: str) -> None:
        """Drop the kernel's attributes and pages of ``path``, if the kernel holds any (else nothing)."""
        fuse = self._fuse
        if fuse:
            mfusepy._libfuse.fuse_invalidate_path(fuse, path.encode("utf-8", "surrogateescape"))


def _type_only(attrs: dict[str, int] | None) -> dict[str, int]:
    """What a plain dirent carries: the type and d_ino (glibc's readdir skips an entry whose d_ino is 0)."""
    return {"st_mode": attrs["st_mode"], "st_ino": attrs.get("st_ino") or UNKNOWN_INO} if attrs else {"st_ino": UNKNOWN_INO}


def _fill(st: Any, attrs: dict[str, int]) -> None:
    ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
    mfusepy.set_st_attrs(st, attrs, use_ns=True)


class FUSE(mfusepy.FUSE):
    """mfusepy's runner with a readdir that carries attributes (``operations.readdir_page``), and
    an opendir that lets the kernel keep listings (``CACHES_LISTINGS``; the mount tells it of changes)."""

    def opendir(self, path: bytes, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.opendir(path.decode(self.encoding, self.errors))
        if CACHES_LISTINGS:
            fi.cache_readdir = fi.keep_cache = 1
        return 0

    def _entries(self, path: bytes | None, offset: int) -> Iterable[Entry]:
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        return self.operations.readdir_page(decoded, offset)  # type: ignore[no-any-return]

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        plus = bool(flags & READDIR_PLUS)
        st = mfusepy.c_stat()
        for name, attrs, next_offset in self._entries(path, offset):
            full = plus and attrs is not None and "st_size" in attrs
            _fill(st, attrs if full else _type_only(attrs))
            if filler(buf, name.encode(self.encoding, self.errors), st, next_offset, FILL_DIR_PLUS if full else 0):
                break
        return 0

    def readdir_fuse_2(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any) -> int:
        st = mfusepy.c_stat()
        for name, attrs, next_offset in self._entries(path, offset):
            _fill(st, _type_only(attrs))
            if filler(buf, name.encode(self.encoding, self.errors), st, next_offset):
                break
        return 0
