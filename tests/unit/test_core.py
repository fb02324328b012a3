"""HistoryFS without a kernel: paths, attributes, listing, open/read, xattrs, control files, deletes."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.cache import BlobCache
from historyfs.core import HistoryFS, Options
from historyfs.deletes import DeleteJournal
from historyfs.errors import Unavailable
from historyfs.fetcher import Fetcher
from historyfs.index import Index
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.mount import GatedSource, library_items
from tests.unit.test_deletes import FakeApi

UTC = ZoneInfo("UTC")


@dataclass
class World:
    fs: HistoryFS
    index: Index
    source: GatedSource
    api: FakeApi
    items: list[HistoryItem]
    fetcher: Fetcher

    def path(self, item: HistoryItem, view: str = "by-date", kind: str = "audio") -> str:
        return "/" + Layout(UTC).place_all(self.items)[item.history_item_id].relpath(view, kind)

    def build(self, options: Options, on_miss=None) -> HistoryFS:  # type: ignore[no-untyped-def]
        deletes = DeleteJournal(self.index, self.api, self.fetcher.cache)  # type: ignore[arg-type]
        return HistoryFS(self.index, self.fetcher, deletes, options, stats=lambda: b'{"ok": 1}\n', on_miss=on_miss)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    items = library_items(30, seed=5)
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items)
    source = GatedSource({i.history_item_id: f"audio of {i.history_item_id}".encode() * 50 for i in items})
    cache = BlobCache(tmp_path / "blobs")
    fetcher = Fetcher(cache, source, index)
    fetcher.start()
    api = FakeApi(items)
    w = World(HistoryFS(index, fetcher, None, Options()), index, source, api, items, fetcher)
    try:
        yield w
    finally:
        fetcher.stop()
        cache.close()


def _errno(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    return int(info.value.errno)


def _cat(fs: HistoryFS, path: str) -> bytes:
    opened = fs.open(path, os.O_RDONLY)
    try:
        return fs.read(opened.fh, 1 << 20, 0)
    finally:
        fs.release(opened.fh)


def test_root_lists_the_views_and_the_control_folder(world: World) -> None:
    """search/ needs the API (a Searches): this HistoryFS has none."""
    assert world.fs.readdir("/") == [".", "..", ".historyfs", "by-date", "by-model", "by-voice", "recent"]
    assert world.fs.readdir("/.historyfs") == [".", "..", "stats.json"]


def test_every_item_has_audio_and_sidecar_in_both_views(world: World) -> None:
    for item in world.items:
        for view in ("by-date", "by-voice"):
            path = world.path(item, view)
            parent, name = path.rsplit("/", 1)
            listing = world.fs.readdir(parent)
            assert name in listing and name.rsplit(".", 1)[0] + ".json" in listing
    assert world.source.calls == []  # listing never downloads


def test_attributes(world: World) -> None:
    item = world.items[0]
    a = world.fs.getattr(world.path(item))
    assert stat.S_ISREG(a.mode) and stat.S_IMODE(a.mode) == 0o444
    assert a.mtime == item.date_unix and a.size == len(world.source.data[item.history_item_id])  # learned first
    assert a.ino == world.fs.getattr(world.path(item, "by-voice")).ino  # stable, the same in both views
    assert a.ino != world.fs.getattr(world.path(item, kind="sidecar")).ino
    side = world.fs.getattr(world.path(item, kind="sidecar"))
    assert side.size == len(item.to_json_bytes())
    d = world.fs.getattr("/by-date")
    assert stat.S_ISDIR(d.mode) and stat.S_IMODE(d.mode) == 0o555
    assert d.mtime == max(i.date_unix for i in world.items) and d.nlink >= 3


def test_options_change_modes_and_owner(world: World) -> None:
    fs = world.build(Options(allow_delete=True, uid=1234, gid=99, umask=0o027))
    a = fs.getattr(world.path(world.items[0]))
    assert stat.S_IMODE(a.mode) == 0o640 and (a.uid, a.gid) == (1234, 99)
    assert stat.S_IMODE(fs.getattr("/by-voice").mode) == 0o750


def test_missing_names_are_enoent(world: World) -> None:
    assert _errno(world.fs.getattr, "/by-date/1999-01") == errno.ENOENT
    assert _errno(world.fs.getattr, world.path(world.items[0]) + ".jpg") == errno.ENOENT
    assert _errno(world.fs.getattr, "/nothing") == errno.ENOENT


def test_open_reads_exact_bytes_and_learns_the_size(world: World) -> None:
    item = world.items[1]
    data = world.source.data[item.history_item_id]
    opened = world.fs.open(world.path(item), os.O_RDONLY)
    try:
        assert world.fs.getattr(world.path(item), opened.fh).size == len(data)  # fstat answers from the handle
        assert world.fs.read(opened.fh, 100, 10) == data[10:110]
        assert world.fs.read(opened.fh, 100, len(data)) == b""
        assert not opened.direct_io
    finally:
        world.fs.release(opened.fh)
    assert world.fetcher.wait_idle(10)
    assert world.fs.getattr(world.path(item, "by-voice")).size == len(data)  # learned: now stat knows it
    again = world.fs.open(world.path(item), os.O_RDONLY)
    assert again.keep_cache  # complete in the cache: let the kernel keep its pages
    world.fs.release(again.fh)


def test_sidecar_is_the_item_json(world: World) -> None:
    item = world.items[2]
    assert _cat(world.fs, world.path(item, kind="sidecar")) == item.to_json_bytes()


def test_xattrs_with_the_option(world: World) -> None:
    fs = world.build(Options(xattrs=True))
    item = world.items[3]
    path = world.path(item)
    names = fs.listxattr(path)
    assert "user.historyfs.item_id" in names
    assert fs.getxattr(path, "user.historyfs.item_id") == item.history_item_id.encode()
    if item.model_id:
        assert fs.getxattr(path, "user.historyfs.model") == item.model_id.encode()
    assert _errno(fs.getxattr, path, "user.nope") == errno.ENODATA
    assert fs.listxattr("/by-date") == []


def test_no_xattrs_by_default(world: World) -> None:
    path = world.path(world.items[3])
    assert world.fs.listxattr(path) == []
    assert _errno(world.fs.getxattr, path, "user.historyfs.item_id") == errno.ENOTSUP


def test_stats_file_is_generated_at_open_with_direct_io(world: World) -> None:
    fs = world.build(Options())
    opened = fs.open("/.historyfs/stats.json", os.O_RDONLY)
    try:
        assert opened.direct_io
        assert json.loads(fs.read(opened.fh, 4096, 0)) == {"ok": 1}
    finally:
        fs.release(opened.fh)


def test_wav_files_appear_with_formats_wav(world: World) -> None:
    fs = world.build(Options(wav=True))
    item = next(i for i in world.items if i.content_type == "audio/mpeg")
    wav = world.path(item, kind="wav")
    assert wav.rsplit("/", 1)[1] in fs.readdir(wav.rsplit("/", 1)[0])
    assert _cat(fs, wav).startswith(b"RIFF")
    assert (item.history_item_id, "wav") in world.source.calls
    assert _errno(world.fs.getattr, wav) == errno.ENOENT  # not shown without --formats wav


def test_changes_are_refused_with_eperm_or_erofs(world: World) -> None:
    path = world.path(world.items[0])
    assert _errno(world.fs.unlink, path) == errno.EPERM  # deletes not allowed
    assert _errno(world.fs.open, path, os.O_WRONLY) == errno.EPERM
    assert _errno(world.fs.refuse, path) == errno.EPERM
    ro = world.build(Options(read_only=True, allow_delete=True))
    assert _errno(ro.unlink, path) == errno.EROFS
    assert _errno(ro.rmdir, "/by-date") == errno.EROFS
    assert _errno(ro.open, path, os.O_RDWR) == errno.EROFS
    assert world.api.calls == []


def test_unlink_of_a_sidecar_hides_it_in_every_view_and_deletes_nothing(world: World) -> None:
    fs = world.build(Options(allow_delete=True))
    item = world.items[4]
    sidecar = world.path(item, kind="sidecar")
    fs.unlink(sidecar)
    assert world.api.calls == [] and _errno(fs.getattr, sidecar) == errno.ENOENT
    assert _errno(fs.getattr, world.path(item, "by-voice", "sidecar")) == errno.ENOENT
    assert sidecar.rsplit("/", 1)[1] not in fs.readdir(sidecar.rsplit("/", 1)[0])
    assert fs.getattr(world.path(item)).mtime == item.date_unix  # the audio stays


def test_unlink_of_the_audio_deletes_the_item_and_leaves_ghosts_until_removed(world: World) -> None:
    fs = world.build(Options(allow_delete=True, wav=True))
    item = next(i for i in world.items if i.content_type == "audio/mpeg")
    fs.unlink(world.path(item))
    assert world.api.calls == [("delete", item.history_item_id)]
    for view in ("by-date", "by-voice"):  # the audio is gone everywhere, and nothing of it is listed
        assert _errno(fs.getattr, world.path(item, view)) == errno.ENOENT
        folder = world.path(item, view).rsplit("/", 1)[0]
        assert not any(item.history_item_id[:8] in n for n in fs.readdir(folder)) if fs_has(fs, folder) else True
    ghost = world.path(item, "by-voice", "wav")  # a name `rm -r` listed before the delete still resolves...
    assert fs.getattr(ghost).mtime == item.date_unix
    fs.unlink(ghost)  # ...and removing it succeeds, once
    assert _errno(fs.getattr, ghost) == errno.ENOENT
    fs.unlink(world.path(item, "by-date", "sidecar"))
    assert len(world.api.calls) == 1  # nothing more was sent


def fs_has(fs: HistoryFS, path: str) -> bool:
    try:
        fs.getattr(path)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("order", ["sorted", "reversed", "audio first", "audio last"])
def test_rm_r_of_a_day_with_wav_succeeds_in_any_order(world: World, order: str) -> None:
    fs = world.build(Options(allow_delete=True, wav=True))
    day = world.path(world.items[0]).rsplit("/", 2)[0]  # /by-date/MONTH/DAY
    in_day = {i.history_item_id for i in world.items if world.path(i).startswith(day + "/")}
    for voice in fs.readdir(day)[2:]:
        names = fs.readdir(f"{day}/{voice}")[2:]
        audio = [n for n in names if not n.endswith((".json", ".wav")) or n.endswith(".wav") and n[:-4] + ".mp3" not in names]
        ordered = {"sorted": names, "reversed": names[::-1], "audio first": audio + [n for n in names if n not in audio],
                   "audio last": [n for n in names if n not in audio] + audio}[order]
        for name in ordered:
            fs.unlink(f"{day}/{voice}/{name}")
        fs.rmdir(f"{day}/{voice}")
    fs.rmdir(day)
    assert {c[1] for c in world.api.calls} == in_day
    assert len(world.index) == len(world.items) - len(in_day)
    assert _errno(fs.getattr, day) == errno.ENOENT


def test_rm_r_of_a_day_deletes_exactly_its_items(world: World) -> None:
    fs = world.build(Options(allow_delete=True))
    day = world.path(world.items[0]).rsplit("/", 2)[0]  # /by-date/MONTH/DAY
    in_day = {i.history_item_id for i in world.items if world.path(i).startswith(day + "/")}
    for voice in fs.readdir(day)[2:]:
        for name in fs.readdir(f"{day}/{voice}")[2:]:
            fs.unlink(f"{day}/{voice}/{name}")
        fs.rmdir(f"{day}/{voice}")
    fs.rmdir(day)
    assert {c[1] for c in world.api.calls} == in_day
    assert len(world.index) == len(world.items) - len(in_day)
    assert _errno(fs.getattr, day) == errno.ENOENT


def test_rmdir_of_a_non_empty_folder_is_enotempty(world: World) -> None:
    fs = world.build(Options(allow_delete=True))
    assert _errno(fs.rmdir, world.path(world.items[0]).rsplit("/", 1)[0]) == errno.ENOTEMPTY
    assert _errno(fs.rmdir, "/by-date") == errno.EPERM


def test_failed_remote_delete_keeps_the_file(world: World) -> None:
    fs = world.build(Options(allow_delete=True))
    world.api.fail = Unavailable("503")
    path = world.path(world.items[5])
    with pytest.raises(Unavailable):
        fs.unlink(path)
    assert fs.getattr(path).mtime == world.items[5].date_unix  # still there


def test_a_missing_name_triggers_one_refresh(world: World) -> None:
    new = library_items(31, seed=5)[-1:]  # not yet in the index
    new_item = HistoryItem.from_json({**new[0].to_json(), "history_item_id": "NEWITEM0000000000001", "date_unix": 1_900_000_000})
    calls: list[int] = []

    def on_miss() -> bool:
        calls.append(1)
        return world.index.merge([new_item]) > 0

    fs = world.build(Options(), on_miss=on_miss)
    world.source.data[new_item.history_item_id] = b"new audio"
    place = Layout(UTC).place_all([*world.items, new_item])[new_item.history_item_id]
    assert fs.getattr("/" + place.relpath("by-voice")).mtime == new_item.date_unix
    assert calls == [1]


class RecordingKernel:
    """Records what the core tells the kernel (the real one is binding.Kernel)."""

    live = True

    def __init__(self) -> None:
        self.paths: list[str] = []

    def invalidate(self, path: str) -> None:
        self.paths.append(path)


def test_a_listing_carries_attributes_only_where_no_io_is_needed(world: World) -> None:
    item = world.items[6]
    folder = world.path(item).rsplit("/", 1)[0]
    audio_name = world.path(item).rsplit("/", 1)[1]
    entries = dict(world.fs.entries(folder))
    assert entries[audio_name] is None  # size unknown: only a stat of it learns it
    assert entries[audio_name.rsplit(".", 1)[0] + ".json"].size == len(item.to_json_bytes())
    assert world.source.calls == []
    world.fs.getattr(world.path(item))  # learns it
    assert dict(world.fs.entries(folder))[audio_name].size == len(world.source.data[item.history_item_id])


def test_the_first_unknown_stat_in_a_folder_learns_the_others(world: World) -> None:
    folder = max({world.path(i).rsplit("/", 1)[0] for i in world.items},
                 key=lambda f: sum(world.path(i).startswith(f + "/") for i in world.items))
    inside = [i for i in world.items if world.path(i).startswith(folder + "/")]
    assert len(inside) >= 2
    world.fs.getattr(world.path(inside[0]))
    assert world.fetcher.wait_idle(10)
    assert {c[0] for c in world.source.calls} == {i.history_item_id for i in inside}  # one round for the folder
    for i in inside:
        assert dict(world.fs.entries(folder))[world.path(i).rsplit("/", 1)[1]] is not None


def test_lazy_sizes_answer_zero_and_the_open_tells_the_kernel(world: World) -> None:
    fs = world.build(Options(lazy_sizes=True))
    kernel = RecordingKernel()
    fs.notify = kernel
    item = world.items[7]
    assert fs.getattr(world.path(item)).size == 0 and world.source.calls == []
    opened = fs.open(world.path(item), os.O_RDONLY)
    fs.release(opened.fh)
    assert set(kernel.paths) == {world.path(item, v) for v in ("by-date", "by-model", "by-voice", "recent")}
    assert fs.getattr(world.path(item)).size == len(world.source.data[item.history_item_id])


def test_a_removed_item_is_told_to_the_kernel_with_its_folders(world: World) -> None:
    fs = world.build(Options(allow_delete=True))
    kernel = RecordingKernel()
    fs.notify = kernel
    item = world.items[8]
    fs.unlink(world.path(item, "by-voice"))
    told = set(kernel.paths)
    for view in ("by-date", "by-model", "by-voice", "recent"):  # 30 items: all of them in recent/
        for kind in ("audio", "sidecar"):
            assert world.path(item, view, kind) in told
        parts = world.path(item, view).split("/")[1:-1]
        assert {"/" + "/".join(parts[:d]) for d in range(1, len(parts) + 1)} <= told
    assert "/" in told


def test_an_added_item_tells_the_kernel_its_folders_only(world: World) -> None:
    kernel = RecordingKernel()
    world.fs.notify = kernel
    new = HistoryItem.from_json({**world.items[0].to_json(), "history_item_id": "NEWITEM0000000000002", "date_unix": 1_900_000_000})
    world.index.merge([new])
    place = Layout(UTC).place_all([*world.items, new])[new.history_item_id]
    trees = ("by-date", "by-model", "by-voice")
    folders = {"/", *(f"/{v}" for v in trees)} | {"/" + "/".join((v, *place.dir_parts(v)[:d])) for v in trees
                                                  for d in range(1, 4)}
    assert set(kernel.paths) == folders | {"/recent"}


def test_nothing_is_told_before_the_mount_is_live(world: World) -> None:
    kernel = RecordingKernel()
    kernel.live = False
    world.fs.notify = kernel
    world.index.replace_all(world.items[1:])
    assert kernel.paths == []
