"""The disk cache of blobs (audio bytes) by string key: hashed names, atomic commits, LRU eviction.

It knows bytes and files, not voices or items. On disk (folders 0700, files 0600):

    <root>/lock                    flock'd (exclusive, non-blocking) by the owning process; holds its pid
    <root>/data/ab/abcdef...        a complete blob; the name is sha256(key) in hex, so no key escapes root
    <root>/data/ab/abcdef....<random>.part   a blob being written (readable while it grows)

A writer appends to a ``.part`` file, fsyncs it, checks its length, then ``os.replace``s it onto the
final name and fsyncs the folder: readers never see a partial blob under a final name, and a crash
(even ``kill -9``) leaves at most a ``.part`` file, which the next start removes.

The in-memory index {hash: (size, last_used)} is rebuilt on start by a background scan of ``data/``
(which also removes stale ``.part`` files), so a big cache never delays the mount; until the scan
ends, lookups of unknown keys fall back to one ``stat``, and eviction waits for it. ``last_used``
is kept in the blob's mtime (set explicitly, in ns), so the LRU order survives restarts.
``make_room`` also gives back least-recently-used blobs when the disk itself runs short (other
files filled it), so a full disk costs old blobs before it costs reads.

Concurrency: one ``threading.Lock`` (``_lock``) guards ``_index``, ``_total``, ``_pins``,
``_live_parts``, ``_gone``, ``_clock`` and ``_counts``. It is held only for bookkeeping, never
during writes, fsyncs, stats, renames or unlinks; methods named ``*_locked`` assume it is held.
Callers should ``pin`` a key before using the path ``get_path`` returns (eviction skips pinned keys).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ensure_private_dir
from .errors import CacheError, ConfigError

log = logging.getLogger(__name__)

DATA_DIR = "data"
LOCK_FILE = "lock"
#: Free space ``make_room`` keeps on the cache's disk besides the blob to come (SQLite, logs...).
MIN_FREE_BYTES = 256 * 1024
PART_SUFFIX = ".part"
_HASH_LEN = 64


def key_hash(key: str) -> str:
    """The blob's file name for ``key``: sha256 hex (any key, even "../x", stays inside root)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _relpath(h: str) -> str:
    return f"{DATA_DIR}/{h[:2]}/{h}"


@dataclass(slots=True)
class _Entry:
    size: int
    last_used: int  # ns since the epoch; also the file's mtime


class BlobCache:
    """Complete blobs by key, bounded by ``max_size`` bytes (None: unbounded)."""

    def __init__(self, root: Path | str, max_size: int | None = None, min_free: int = MIN_FREE_BYTES) -> None:
        self.root = Path(root)
        self.max_size = max_size  # read-only
        self.min_free = min_free  # read-only
        self._data = self.root / DATA_DIR  # read-only
        self._lock = threading.Lock()
        self._index: dict[str, _Entry] = {}
        self._total = 0
        self._pins: dict[str, int] = {}
        self._live_parts: set[str] = set()  # names of our own .part files (the scan keeps them)
        self._gone: set[str] = set()  # hashes discarded/evicted while the scan runs
        self._clock = 0
        # lookups of a key (get_path, by opens and read-ahead alike) that found / did not find a complete blob
        self._counts = {"lookup_hits": 0, "lookup_misses": 0, "evictions": 0, "evicted_bytes": 0}
        self._lock_fd = self._take_lock()
        self._scanned = threading.Event()
        self._stop = threading.Event()
        self._scanner = threading.Thread(target=self._scan, name="historyfs-cache-scan", daemon=True)
        self._scanner.start()

    def _take_lock(self) -> int:
        try:
            ensure_private_dir(self.root)
            ensure_private_dir(self._data)
            fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (ConfigError, OSError) as exc:
            raise CacheError(f"cannot use cache folder {self.root}: {_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise CacheError(f"cache folder {self.root} is in use by another historyfs process (pid {pid})") from None
        except OSError as exc:
            os.close(fd)
            raise CacheError(f"cannot lock cache folder {self.root}: {_reason(exc)}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def close(self) -> None:
        """Stop the scan and release the folder lock (idempotent)."""
        self._stop.set()
        if self._scanner is not threading.current_thread():
            self._scanner.join()
        with self._lock:
            fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)  # releases the flock

    def __enter__(self) -> BlobCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_scanned(self, timeout: float | None = None) -> bool:
        """Block until the start-up scan has indexed every blob; False on timeout."""
        return self._scanned.wait(timeout)

    def get_path(self, key: str) -> Path | None:
        """The complete blob for ``key`` (marking it recently used), or None."""
        h = key_hash(key)
        entry = self._lookup(h)
        with self._lock:
            self._counts["lookup_hits" if entry is not None else "lookup_misses"] += 1
            if entry is None:
                return None
            tick = entry.last_used = self._tick_locked()
        path = self._data / h[:2] / h
        try:
            os.utime(path, ns=(tick, tick))
        except FileNotFoundError:  # removed behind our back
            with self._lock:
                self._remove_locked(h)
            return None
        return path

    def size(self, key: str) -> int | None:
        entry = self._lookup(key_hash(key))
        return entry.size if entry is not None else None

    def has(self, key: str) -> bool:
        return self.size(key) is not None

    @staticmethod
    def peek_path(root: Path | str, key: str) -> Path | None:
        """A complete blob under ``root`` for ``key``, without the lock or marking it used.

        For read-only users (exporters) while a mount may own the cache. ``root`` may be a
        BlobCache root or the mount's cache folder, whose BlobCache lives in ``blobs/``.
        """
        rel = _relpath(key_hash(key))
        for base in (Path(root), Path(root) / "blobs"):
            if (base / rel).is_file():
                return base / rel
        return None

    def _lookup(self, h: str) -> _Entry | None:
        """The index entry; before the scan ends, an unknown hash is looked up on disk once."""
        with self._lock:
            entry = self._index.get(h)
            if entry is not None or self._scanned.is_set():
                return entry
        try:
            st = os.stat(self._data / h[:2] / h)
        except FileNotFoundError:
            return None
        with self._lock:
            return self._adopt_locked(h, st.st_size, st.st_mtime_ns)  # None if discarded meanwhile

    def writer(self, key: str) -> PartialBlob:
        """A new ``.part`` file for ``key``; commit() publishes it, abort() removes it."""
        h = key_hash(key)
        folder = self._data / h[:2]
        name = f"{h}.{secrets.token_hex(6)}{PART_SUFFIX}"
        with self._lock:
            self._live_parts.add(name)
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._part_done(name)
            raise _cache_error(exc, f"cannot create a cache file in {folder}") from None
        return PartialBlob(self, h, folder / name, fd)

    def _part_done(self, name: str) -> None:
        with self._lock:
            self._live_parts.discard(name)

    def _published(self, h: str, size: int) -> None:
        """Record a committed blob (replacing an older copy), then make room."""
        with self._lock:
            old = self._index.pop(h, None)
            self._total -= old.size if old is not None else 0
            self._gone.discard(h)
            self._index[h] = _Entry(size, self._tick_locked())
            self._total += size
        if self._scanned.is_set():
            self._evict(0, keep=h)  # never the blob just committed: its writer is about to use it

    def pin(self, key: str) -> None:
        """Protect ``key`` from eviction (counted: pin twice, unpin twice)."""
        h = key_hash(key)
        with self._lock:
            self._pins[h] = self._pins.get(h, 0) + 1

    def unpin(self, key: str) -> None:
        h = key_hash(key)
        with self._lock:
            n = self._pins.get(h, 0) - 1
            if n > 0:
                self._pins[h] = n
            else:
                self._pins.pop(h, None)

    def evict(self, needed: int = 0) -> int:
        """Delete least-recently-used unpinned blobs until total + needed <= max_size; bytes freed."""
        return self._evict(needed)

    def make_room(self, needed: int = 0) -> int:
        """``evict(needed)``, then more LRU blobs while the disk has under ``needed + min_free`` free."""
        freed = self._evict(needed)
        short = needed + self.min_free - _free_bytes(self._data)
        if short > 0:
            with self._lock:
                victims = self._pick_victims_locked(short, None)
            freed += _drop(self._data, victims)
            log.info("cache disk short of %d bytes: gave back %d blobs", short, len(victims))
        return freed

    def _evict(self, needed: int, keep: str | None = None) -> int:
        if self.max_size is None:
            return 0
        self._scanned.wait()
        with self._lock:
            victims = self._pick_victims_locked(self._total + needed - self.max_size, keep)
        return _drop(self._data, victims)

    def _pick_victims_locked(self, excess: int, keep: str | None) -> list[tuple[str, int]]:
        """Unpinned blobs, least recently used first, until ``excess`` bytes; removed from the index."""
        if excess <= 0:
            return []
        victims = []
        for h, entry in sorted(self._index.items(), key=lambda kv: (kv[1].last_used, kv[0])):
            if excess <= 0:
                break
            if h not in self._pins and h != keep:
                victims.append((h, entry.size))
                excess -= entry.size
        for h, size in victims:
            self._remove_locked(h)
            self._counts["evictions"] += 1
            self._counts["evicted_bytes"] += size
        return victims

    def discard(self, key: str) -> None:
        """Remove ``key``'s blob (even if pinned: open file descriptors keep working on Linux)."""
        h = key_hash(key)
        with self._lock:
            self._remove_locked(h)
        _unlink(self._data / h[:2] / h)

    def _remove_locked(self, h: str) -> None:
        entry = self._index.pop(h, None)
        if entry is not None:
            self._total -= entry.size
        if not self._scanned.is_set():
            self._gone.add(h)

    def total_bytes(self) -> int:
        with self._lock:
            return self._total

    def stats(self) -> dict[str, int | None]:
        """files, bytes, max_size, lookup_hits, lookup_misses, evictions, evicted_bytes, pinned."""
        with self._lock:
            return {
                "files": len(self._index),
                "bytes": self._total,
                "max_size": self.max_size,
                **self._counts,
                "pinned": len(self._pins),
            }

    def _tick_locked(self) -> int:
        """Now in ns, strictly increasing within this process (keeps LRU order exact)."""
        self._clock = max(time.time_ns(), self._clock + 1)
        return self._clock

    def _adopt_locked(self, h: str, size: int, mtime_ns: int) -> _Entry | None:
        """Index a blob found on disk, unless it is known already or was removed meanwhile."""
        entry = self._index.get(h)
        if entry is None and h not in self._gone:
            entry = self._index[h] = _Entry(size, mtime_ns)
            self._total += size
            self._clock = max(self._clock, mtime_ns)
        return entry

    def _scan(self) -> None:
        """Index every complete blob and remove stale .part files (runs once, in a thread)."""
        try:
            for sub in _subfolders(self._data):
                if self._stop.is_set():
                    return
                self._scan_folder(sub)
        except OSError as exc:
            log.warning("cache scan of %s stopped: %s", self._data, _reason(exc))
        finally:
            with self._lock:
                self._gone.clear()
                self._scanned.set()
        if self.max_size is not None and not self._stop.is_set():
            self.evict()

    def _scan_folder(self, folder: str) -> None:
        found = []
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.endswith(PART_SUFFIX):
                    self._remove_stale_part(e.path, e.name)
                elif len(e.name) == _HASH_LEN:
                    st = _stat(e)
                    if st is not None:
                        found.append((e.name, st.st_size, st.st_mtime_ns))
        with self._lock:
            for h, size, mtime_ns in found:
                self._adopt_locked(h, size, mtime_ns)

    def _remove_stale_part(self, path: str, name: str) -> None:
        with self._lock:
            mine = name in self._live_parts
        if not mine:
            _unlink(Path(path))


class PartialBlob:
    """One blob being written. Not thread-safe itself: one writer thread, any number of readers."""

    def __init__(self, cache: BlobCache, h: str, path: Path, fd: int) -> None:
        self.path = path  # readable by other threads while it grows
        self.written = 0
        self._cache, self._hash, self._fd = cache, h, fd
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns its length. CacheError (and the part removed) on failure."""
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.written += n
        except OSError as exc:
            self.abort()
            raise _cache_error(exc, "cannot write to the cache") from None
        return len(data)

    def commit(self, expected_size: int | None = None) -> Path:
        """fsync, check the length, publish atomically under the final name; returns that path."""
        if self._done:
            raise CacheError("this cache write was already committed or aborted")
        if expected_size is not None and self.written != expected_size:
            self.abort()
            raise CacheError(f"cache write is {self.written} bytes, expected {expected_size}: not kept")
        final = self.path.parent / self._hash
        try:
            os.fsync(self._fd)
            os.replace(self.path, final)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            self.abort()
            raise _cache_error(exc, "cannot store a blob in the cache") from None
        self._finish()
        self._cache._published(self._hash, self.written)
        return final

    def abort(self) -> None:
        """Drop the part file (idempotent; a no-op after commit)."""
        if not self._done:
            self._finish()
            _unlink(self.path)

    def _finish(self) -> None:
        self._done = True
        os.close(self._fd)
        self._cache._part_done(self.path.name)

    def __enter__(self) -> PartialBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()  # no implicit commit: an uncommitted part is dropped on any exit


def _subfolders(data: Path) -> list[str]:
    with os.scandir(data) as entries:
        return sorted(e.path for e in entries if len(e.name) == 2 and e.is_dir(follow_symlinks=False))


def _stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None


def _drop(data: Path, victims: list[tuple[str, int]]) -> int:
    """Unlink evicted blobs (already out of the index); bytes freed."""
    for h, _size in victims:
        _unlink(data / h[:2] / h)
    return sum(size for _h, size in victims)


def _free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on ``folder``'s disk (huge if unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove cache file %s: %s", path, _reason(exc))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _cache_error(exc: OSError, what: str) -> CacheError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheError(f"{what}: the cache disk is full")
    return CacheError(f"{what}: {_reason(exc)}")
