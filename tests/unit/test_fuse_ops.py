"""The fusepy adapter without a kernel: which operations reach Python, and kept thread states."""

from __future__ import annotations

import ctypes
import errno
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from historyfs.core import HistoryFS, Options
from historyfs.errors import AuthError, NotFound, Unavailable
from historyfs import fuse_ops
from historyfs.fuse_ops import FuseOps, ThreadStates, errno_of
from historyfs.index import Index
from historyfs.stats import Counters
from tests.fixtures.mount import library_items

_LIBC = ctypes.CDLL(None)
_START = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)


def _on_foreign_thread(fn: object) -> None:
    """Run ``fn`` on a thread Python did not start (as libfuse's workers are), and join it."""
    def body(_: object) -> None:
        fn()  # type: ignore[operator]

    callback = _START(body)
    handle = ctypes.c_ulong()
    assert _LIBC.pthread_create(ctypes.byref(handle), None, callback, None) == 0
    assert _LIBC.pthread_join(handle, None) == 0


def _ops(tmp_path: Path, **options: bool) -> FuseOps:
    index = Index(tmp_path / "i.db", ZoneInfo("UTC"))
    index.replace_all(library_items(4))
    return FuseOps(HistoryFS(index, SimpleNamespace(prefetch=None, learn_later=None), None, Options(**options)),  # type: ignore[arg-type]
                   counters=Counters())


def test_constant_operations_never_reach_python(tmp_path: Path) -> None:
    ops = _ops(tmp_path)
    for name in ("access", "flush", "fsync", "opendir", "releasedir", "getxattr"):
        assert getattr(ops, name) is None, name  # fusepy leaves a None out of the libfuse op table
    assert ops.listxattr("/by-date") == []  # answered, so `rsync -X` sees "no attributes"
    (tmp_path / "x").mkdir()
    assert _ops(tmp_path / "x", xattrs=True).getxattr is not None


def test_operations_are_counted(tmp_path: Path) -> None:
    ops = _ops(tmp_path)
    ops.getattr("/")
    ops.readdir("/", None)
    with pytest.raises(OSError):
        ops.getattr("/nope")
    assert ops.counters.snapshot()["counts"] == {"getattr": 2, "readdir": 1}


def test_errors_map_to_errno() -> None:
    assert errno_of(NotFound("x")) == errno.ENOENT
    assert errno_of(AuthError("x")) == errno.EACCES
    assert errno_of(Unavailable("x")) == errno.EIO
    assert errno_of(OSError(errno.EROFS, "ro")) == errno.EROFS


def test_a_foreign_threads_state_is_kept_once_and_freed_after_it_ends() -> None:
    states = ThreadStates()
    _on_foreign_thread(lambda: (states.keep(), states.keep()))
    assert len(states) == 1
    deadline = time.monotonic() + 5
    while states.reap() == 0 and time.monotonic() < deadline:  # the thread is gone once joined
        time.sleep(0.01)
    assert len(states) == 0


def test_python_threads_and_the_bound_are_respected() -> None:
    states = ThreadStates(limit=1)
    states.keep()  # the main thread: Python owns its state
    t = threading.Thread(target=states.keep)
    t.start()
    t.join()
    assert len(states) == 0
    _on_foreign_thread(states.keep)
    _on_foreign_thread(states.keep)  # over the bound (the first is not reaped yet): not kept
    assert len(states) <= 1
    states.reap()


def test_the_adapter_keeps_the_state_of_its_calling_thread(tmp_path: Path) -> None:
    ops = _ops(tmp_path)
    fuse_ops.kept_thread_states()  # reap what earlier tests left
    before = len(fuse_ops._thread_states)
    seen: list[int] = []
    _on_foreign_thread(lambda: (ops.getattr("/by-date"), seen.append(len(fuse_ops._thread_states))))
    assert seen == [before + 1]


def test_readdir_pages_carry_offsets_and_known_attributes(tmp_path: Path) -> None:
    ops = _ops(tmp_path)
    folder = "/by-date"
    while True:  # down to a leaf folder
        names = [n for n, a, _ in ops.readdir_page(folder, 0)[2:] if a.get("st_mode", 0) & 0o040000]
        if not names:
            break
        folder = f"{folder}/{names[0]}"
    page = ops.readdir_page(folder, 0)
    assert [off for _, _, off in page] == list(range(1, len(page) + 1))  # never 0 (libfuse 3.14 drops those attrs)
    assert page[0][0] == "." and page[1][0] == ".."
    files = {name: attrs for name, attrs, _ in page[2:]}
    assert all("st_size" in a for n, a in files.items() if n.endswith(".json"))  # known without I/O
    assert all("st_size" not in a and a["st_ino"] for n, a in files.items() if not n.endswith(".json"))  # unknown: type only
    assert ops.readdir_page(folder, 3) == page[3:]  # the next page continues where the kernel stopped
    assert ops.readdir_page(folder, len(page)) == []


def test_init_switches_off_automatic_data_invalidation(tmp_path: Path) -> None:
    ops = _ops(tmp_path)
    conn = SimpleNamespace(want=0xFFFF)
    ops.init_with_config(conn, None)
    assert conn.want & (1 << 12) == 0 and conn.want & 1
    assert ops.fs.notify is ops.kernel


def test_folders_are_listed_without_attributes_so_cp_keeps_name_order(tmp_path: Path) -> None:
    ops = _ops(tmp_path)
    page = ops.readdir_page("/by-date", 0)
    folders = [attrs for name, attrs, _ in page[2:]]
    assert folders and all(a == {"st_mode": 0o040000, "st_ino": 0xFFFFFFFF} for a in folders)
