"""Which libfuse the mount uses: libfuse 3 where installed, else libfuse 2; ``FUSE_LIBRARY_PATH`` overrides.

Found without loading it (the binding loads it; the checks before mounting only need to know).
"""

from __future__ import annotations

import ctypes.util
import os


def library_path() -> str | None:
    """The libfuse shared library the binding will load, or None if there is none."""
    return os.environ.get("FUSE_LIBRARY_PATH") or ctypes.util.find_library("fuse3") or ctypes.util.find_library("fuse")


def major(path: str | None) -> int:
    """2 for libfuse 2 (libfuse.so.2), else 3."""
    return 2 if path and "fuse3" not in path and "libfuse.so" in path else 3
