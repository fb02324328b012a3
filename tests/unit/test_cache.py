"""historyfs.cache.BlobCache: atomic commits, locking, LRU eviction, pins, restarts, disk full."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from historyfs.cache import BlobCache
from historyfs.errors import CacheError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cache(root: Path) -> Iterator[BlobCache]:
    c = BlobCache(root)
    try:
        yield c
    finally:
        c.close()


def put(cache: BlobCache, key: str, data: bytes) -> Path:
    w = cache.writer(key)
    w.write(data)
    return w.commit(expected_size=len(data))


def parts(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- writing


def test_commit_publishes_the_bytes_under_a_hashed_name(cache: BlobCache, root: Path) -> None:
    assert cache.get_path("item1.mp3") is None and not cache.has("item1.mp3")
    w = cache.writer("item1.mp3")
    assert w.write(b"hello ") == 6
    assert w.write(memoryview(b"world")) == 5
    assert w.written == 11
    path = w.commit(expected_size=11)
    h = hashlib.sha256(b"item1.mp3").hexdigest()
    assert path == root / "data" / h[:2] / h
    assert cache.get_path("item1.mp3") == path
    assert path.read_bytes() == b"hello world"
    assert cache.size("item1.mp3") == 11 and cache.has("item1.mp3")
    assert cache.total_bytes() == 11
    assert parts(root) == []


def test_a_growing_part_is_readable_but_never_visible_under_the_final_name(cache: BlobCache) -> None:
    w = cache.writer("k")
    w.write(b"abc")
    with open(w.path, "rb") as reader:
        assert reader.read() == b"abc"
        w.write(b"def")
        assert reader.read() == b"def"
    assert cache.get_path("k") is None
    assert not (w.path.parent / w.path.name.split(".")[0]).exists()
    final = w.commit()
    assert final.read_bytes() == b"abcdef" and not w.path.exists()


def test_wrong_size_is_rejected_and_nothing_is_kept(cache: BlobCache, root: Path) -> None:
    w = cache.writer("short")
    w.write(b"12345")
    with pytest.raises(CacheError, match="5 bytes, expected 10"):
        w.commit(expected_size=10)
    assert cache.get_path("short") is None
    assert parts(root) == [] and cache.total_bytes() == 0
    w.abort()  # idempotent after a failed commit


def test_abort_and_context_manager_never_commit(cache: BlobCache, root: Path) -> None:
    w = cache.writer("a")
    w.write(b"x")
    w.abort()
    assert parts(root) == []
    with pytest.raises(RuntimeError), cache.writer("b") as w2:
        w2.write(b"data")
        raise RuntimeError("download failed")
    with cache.writer("c") as w3:
        w3.write(b"data")  # no commit: dropped on exit
    assert parts(root) == [] and not cache.has("b") and not cache.has("c")
    with cache.writer("d") as w4:
        w4.write(b"data")
        w4.commit()
    assert cache.get_path("d") is not None


def test_commit_twice_is_an_error(cache: BlobCache) -> None:
    w = cache.writer("k")
    w.commit()
    with pytest.raises(CacheError):
        w.commit()
    assert cache.size("k") == 0


def test_two_writers_for_one_key_last_commit_wins(cache: BlobCache) -> None:
    w1, w2 = cache.writer("same"), cache.writer("same")
    assert w1.path != w2.path
    w1.write(b"one")
    w2.write(b"two!")
    w1.commit()
    w2.commit()
    assert cache.get_path("same").read_bytes() == b"two!"  # type: ignore[union-attr]
    assert cache.total_bytes() == 4 and cache.stats()["files"] == 1


def test_no_key_escapes_the_root(cache: BlobCache, root: Path) -> None:
    for key in ("../../etc/passwd", "/abs/path", "a/../../b", "\x00nul", "\ud800surrogate"):
        path = put(cache, key, b"x")
        assert path.resolve().is_relative_to(root.resolve() / "data")
        assert cache.get_path(key) == path


def test_concurrent_writers_and_readers_keep_the_books_right(root: Path) -> None:
    c = BlobCache(root)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(30):
                key = f"t{n}-{i}"
                put(c, key, bytes([n]) * (i + 1))
                assert c.get_path(key).read_bytes() == bytes([n]) * (i + 1)  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert c.stats()["files"] == 180
        assert c.total_bytes() == 6 * sum(range(1, 31))
    finally:
        c.close()


# ---------------------------------------------------------------- locking


def test_second_cache_in_the_same_process_is_refused(cache: BlobCache, root: Path) -> None:
    with pytest.raises(CacheError, match=rf"in use by another historyfs process \(pid {os.getpid()}\)"):
        BlobCache(root)
    cache.close()
    BlobCache(root).close()  # free again once closed


HOLDER = textwrap.dedent(
    """
    import sys
    from historyfs.cache import BlobCache
    c = BlobCache(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()
    c.close()
    """
)


def test_second_cache_in_another_process_is_refused(root: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(CacheError, match=rf"pid {child.pid}\)"):
            BlobCache(root)
    finally:
        child.kill()
        child.wait()
    BlobCache(root).close()  # the kernel released the dead holder's lock


# ---------------------------------------------------------------- eviction and pins


def test_lru_eviction_skips_pinned_blobs(root: Path) -> None:
    with BlobCache(root, max_size=300) as c:
        assert c.wait_scanned(10)
        for key in ("a", "b", "c"):
            put(c, key, b"x" * 100)
        assert c.get_path("a") is not None  # a is now the most recently used; b the least
        c.pin("b")
        assert c.evict(needed=100) == 100
        assert (c.has("a"), c.has("b"), c.has("c")) == (True, True, False)
        c.unpin("b")
        assert c.evict(needed=200) == 100
        assert (c.has("a"), c.has("b")) == (True, False)
        assert c.stats()["evictions"] == 2


def test_counted_pins(root: Path) -> None:
    with BlobCache(root, max_size=100) as c:
        assert c.wait_scanned(10)
        put(c, "a", b"x" * 100)
        c.pin("a")
        c.pin("a")
        c.unpin("a")
        assert c.evict(needed=100) == 0 and c.has("a")
        c.unpin("a")
        assert c.evict(needed=100) == 100 and not c.has("a")


def test_commit_evicts_least_recently_used(root: Path) -> None:
    with BlobCache(root, max_size=250) as c:
        assert c.wait_scanned(10)
        first = put(c, "first", b"1" * 100)
        put(c, "second", b"2" * 100)
        put(c, "third", b"3" * 100)
        assert not c.has("first") and not first.exists()
        assert c.has("second") and c.has("third")
        assert c.total_bytes() == 200
        big = put(c, "big", b"b" * 400)  # bigger than the cap: kept (its reader needs it), others go
        assert big.exists() and c.stats()["files"] == 1


def test_restart_keeps_contents_and_lru_order(root: Path) -> None:
    with BlobCache(root) as c:
        for key in ("a", "b", "c"):
            put(c, key, key.encode() * 100)
        c.get_path("a")
        c.get_path("c")  # use order now: b, a, c (write order would say a; hash order c)
    with BlobCache(root, max_size=200) as c:  # the start-up scan enforces the cap, oldest use first
        assert c.wait_scanned(10)
        assert c.total_bytes() == 200 and c.stats()["evictions"] == 1
        assert (c.has("a"), c.has("b"), c.has("c")) == (True, False, True)
        assert c.get_path("a").read_bytes() == b"a" * 100  # type: ignore[union-attr]


def test_discard_removes_even_pinned_blobs_and_open_files_keep_working(cache: BlobCache) -> None:
    path = put(cache, "gone", b"audio")
    cache.pin("gone")
    with open(path, "rb") as f:
        cache.discard("gone")
        assert f.read() == b"audio"
    assert not path.exists() and cache.get_path("gone") is None and cache.total_bytes() == 0
    cache.discard("never-there")  # no error


def test_stats_count_lookup_hits_and_misses(cache: BlobCache) -> None:
    put(cache, "k", b"123")
    cache.get_path("k")
    cache.get_path("k")
    cache.get_path("nope")
    s = cache.stats()
    assert (s["lookup_hits"], s["lookup_misses"], s["files"], s["bytes"], s["max_size"]) == (2, 1, 1, 3, None)
    assert "hits" not in s and "misses" not in s  # not to be read as the mount's cache_hits / cache_misses


def test_blobs_are_found_before_the_startup_scan_ends(root: Path) -> None:
    with BlobCache(root) as c:
        put(c, "k", b"kept")
    with BlobCache(root) as c:  # asked at once: found by the index or by one stat
        assert c.get_path("k").read_bytes() == b"kept"  # type: ignore[union-attr]
        assert c.size("k") == 4 and c.get_path("missing") is None
        assert c.wait_scanned(10) and c.stats()["files"] == 1


def test_a_blob_removed_behind_the_caches_back_is_a_miss(cache: BlobCache) -> None:
    put(cache, "k", b"123").unlink()
    assert cache.get_path("k") is None
    assert cache.total_bytes() == 0


def test_peek_path_reads_without_the_lock(cache: BlobCache, root: Path) -> None:
    path = put(cache, "item.mp3", b"x")
    assert BlobCache.peek_path(root, "item.mp3") == path
    assert BlobCache.peek_path(root, "other.mp3") is None


def test_peek_path_accepts_the_mounts_cache_folder(tmp_path: Path) -> None:
    with BlobCache(tmp_path / "blobs") as c:
        path = put(c, "item.mp3", b"x")
    assert BlobCache.peek_path(tmp_path, "item.mp3") == path


# ---------------------------------------------------------------- permissions and crashes


def test_folders_are_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        root = tmp_path / "wide" / "cache"
        with BlobCache(root) as c:
            blob = put(c, "k", b"data")
            w = c.writer("k2")
            assert mode(w.path) == 0o600
            w.abort()
            assert mode(root) == mode(root / "data") == mode(blob.parent) == 0o700
            assert mode(blob) == mode(root / "lock") == 0o600
    finally:
        os.umask(old)


def test_an_existing_open_folder_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    BlobCache(root).close()
    assert mode(root) == 0o700


def test_an_unusable_root_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match="cannot use cache folder"):
        BlobCache(tmp_path / "file")


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from historyfs.cache import BlobCache
    c = BlobCache(sys.argv[1])
    w = c.writer("victim.mp3")
    w.write(b"x" * 5000)
    print(w.path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_kill_9_mid_write_leaves_nothing_behind(root: Path) -> None:
    run = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root)], capture_output=True, text=True, timeout=60)
    assert run.returncode == -signal.SIGKILL
    part = Path(run.stdout.strip())
    assert part.exists() and part.stat().st_size == 5000
    with BlobCache(root) as c:
        assert c.wait_scanned(10)
        assert not c.has("victim.mp3") and c.get_path("victim.mp3") is None
        assert parts(root) == []
        put(c, "victim.mp3", b"y" * 6000)
        assert c.get_path("victim.mp3").read_bytes() == b"y" * 6000  # type: ignore[union-attr]


def test_the_startup_scan_keeps_parts_being_written(root: Path) -> None:
    with BlobCache(root) as c:
        w = c.writer("live")
        w.write(b"x")
        assert c.wait_scanned(10)
        assert w.path.exists()
        w.commit()
        assert c.has("live")


# ---------------------------------------------------------------- disk full


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_is_a_cache_error_and_nothing_corrupt_is_kept(tiny_fs: Path) -> None:
    with BlobCache(tiny_fs / "cache") as c:
        w = c.writer("big")
        with pytest.raises(CacheError, match="disk is full"):
            for _ in range(64):
                w.write(b"z" * 4096)
        assert parts(tiny_fs) == [] and not c.has("big")
        w.abort()
        put(c, "small", b"ok")
        assert c.get_path("small").read_bytes() == b"ok"  # type: ignore[union-attr]


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (4096, 1):
            try:
                while True:
                    f.write(b"f" * size)
            except OSError:
                pass


def test_make_room_gives_back_lru_blobs_when_the_disk_runs_short(tiny_fs: Path) -> None:
    with BlobCache(tiny_fs / "cache", min_free=0) as c:
        assert c.wait_scanned(10)
        for key in ("a", "b", "c"):
            put(c, key, b"x" * 8192)
        assert c.get_path("a") is not None  # LRU order now b, c, a
        c.pin("b")
        _fill(tiny_fs)  # someone else filled the disk
        with pytest.raises(CacheError, match="disk is full"):
            put(c, "d", b"y" * 8192)
        assert c.make_room(8192) == 8192
        assert (c.has("a"), c.has("b"), c.has("c")) == (True, True, False)  # pinned b stays; c was least recent
        assert put(c, "d", b"y" * 8192).read_bytes() == b"y" * 8192
        assert parts(tiny_fs) == []


def test_make_room_keeps_everything_while_the_disk_has_space(cache: BlobCache) -> None:
    assert cache.wait_scanned(10)
    put(cache, "a", b"x" * 1000)
    assert cache.make_room(1000) == 0 and cache.has("a")
