"""Real mounts, read side: the tree, exact bytes through cp/rsync/ffprobe/sox/mmap/threads on COLD mounts."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]
UTC = ZoneInfo("UTC")


@pytest.fixture(params=["content-length", "chunked"])
def live(request: pytest.FixtureRequest, fake_tenant: Callable[..., FakeTenant], fake_faults: FakeApiServer,
         tmp_path: Path) -> Iterator[tuple[Mount, FakeTenant]]:
    """A cold mount (fresh cache) of a fresh 24-item tenant; audio sent with Content-Length, or chunked without."""
    fake_faults.set_faults(Faults(chunked_audio=request.param == "chunked"))
    tenant = fake_tenant(items=24, seed=21)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", tenant.base_url, tenant.api_key, tmp_path / "cache") as m:
        yield m, tenant


def _items(t: FakeTenant) -> list[HistoryItem]:
    return [HistoryItem.from_json(d) for d in t.library.items()]


def _by_path(t: FakeTenant, view: str = "by-voice") -> dict[str, HistoryItem]:
    items = _items(t)
    places = Layout(UTC).place_all(items)
    return {places[i.history_item_id].relpath(view): i for i in items}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_tree_matches_the_api_in_every_view(live: tuple[Mount, FakeTenant]) -> None:
    """24 items: all of them in recent/ too; search/ lists no query until one is made."""
    m, t = live
    items = _items(t)
    places = Layout(UTC).place_all(items).values()
    views = ("by-date", "by-model", "by-voice", "recent")
    expected = {p.relpath(v, k) for p in places for v in views for k in ("audio", "sidecar")}
    assert {str(p.relative_to(m.path)) for p in m.path.rglob("*") if p.is_file() and ".historyfs" not in str(p)} == expected
    assert sorted(os.listdir(m.path)) == [".historyfs", *views, "search"]
    assert len(items) == 24


def test_every_file_has_the_servers_bytes(live: tuple[Mount, FakeTenant]) -> None:
    m, t = live
    for rel, item in _by_path(t).items():
        assert _md5((m.path / rel).read_bytes()) == _md5(t.library.audio_bytes(item.history_item_id)), rel
        side = (m.path / rel).with_suffix(".json")
        assert side.read_bytes() == item.to_json_bytes()
        assert json.loads(side.read_text()) == item.to_json()
        assert os.stat(m.path / rel).st_size == len(t.library.audio_bytes(item.history_item_id))
        assert os.stat(m.path / rel).st_mtime == item.date_unix


def test_cp_r_copies_exact_bytes(live: tuple[Mount, FakeTenant], tmp_path: Path) -> None:
    m, t = live
    subprocess.run(["cp", "-r", str(m.path / "by-date"), str(tmp_path / "copy")], check=True)
    for rel, item in _by_path(t, "by-date").items():
        copied = tmp_path / "copy" / rel.split("/", 1)[1]
        assert copied.read_bytes() == t.library.audio_bytes(item.history_item_id), rel


def test_rsync_twice_transfers_nothing_the_second_time(live: tuple[Mount, FakeTenant], tmp_path: Path) -> None:
    m, t = live
    src, dst = f"{m.path}/by-voice/", str(tmp_path / "mirror")
    subprocess.run(["rsync", "-a", src, dst], check=True)
    for rel, item in _by_path(t).items():
        assert (tmp_path / "mirror" / rel.split("/", 1)[1]).read_bytes() == t.library.audio_bytes(item.history_item_id)
    second = subprocess.run(["rsync", "-a", "--itemize-changes", "--stats", src, dst], check=True,
                            capture_output=True, text=True).stdout
    assert "Number of regular files transferred: 0" in second
    assert not [line for line in second.splitlines() if line.startswith((">f", "cd", ".d..t"))]


def test_ffprobe_and_sox_read_cold_files(live: tuple[Mount, FakeTenant], tmp_path: Path) -> None:
    m, t = live
    rel, item = sorted(_by_path(t).items())[0]
    local = tmp_path / Path(rel).name
    local.write_bytes(t.library.audio_bytes(item.history_item_id))
    probe = ["ffprobe", "-v", "error", "-show_entries", "format=duration,size:stream=codec_name,sample_rate", "-of", "json"]
    through = subprocess.run([*probe, str(m.path / rel)], check=True, capture_output=True, text=True).stdout
    direct = subprocess.run([*probe, str(local)], check=True, capture_output=True, text=True).stdout
    assert json.loads(through) == json.loads(direct) and float(json.loads(direct)["format"]["duration"]) > 0
    rel2, _ = sorted(_by_path(t).items())[1]  # another cold file for sox
    sox = subprocess.run(["sox", str(m.path / rel2), "-n", "stat"], capture_output=True, text=True)
    assert sox.returncode == 0 and "Length (seconds)" in sox.stderr


def test_mmap_of_a_cold_file(live: tuple[Mount, FakeTenant]) -> None:
    m, t = live
    rel, item = sorted(_by_path(t).items())[2]
    # In a child: a page fault through the mount holds this process's GIL, and the fake API serving
    # the bytes runs in this process.
    code = ("import hashlib, mmap, sys\n"
            "with open(sys.argv[1], 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:\n"
            "    print(len(mm), hashlib.md5(mm[:]).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code, str(m.path / rel)], capture_output=True, text=True, check=True).stdout
    data = t.library.audio_bytes(item.history_item_id)
    assert out.split() == [str(len(data)), _md5(data)]


def test_sixteen_threads_of_random_range_reads(live: tuple[Mount, FakeTenant]) -> None:
    m, t = live
    rel, item = sorted(_by_path(t).items())[3]
    data = t.library.audio_bytes(item.history_item_id)
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        with open(m.path / rel, "rb", buffering=0) as f:
            for _ in range(40):
                off = rng.randrange(len(data))
                n = rng.randrange(1, 200_000)
                if os.pread(f.fileno(), n, off) != data[off : off + n]:
                    errors.append(f"{seed}: {off}+{n}")

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert errors == []


def test_stats_xattrs_and_learned_sizes(live: tuple[Mount, FakeTenant]) -> None:
    m, t = live
    rel, item = sorted(_by_path(t).items())[4]
    assert os.stat(m.path / rel).st_size == len(t.library.audio_bytes(item.history_item_id))  # never opened: learned
    (m.path / rel).read_bytes()
    stats = json.loads((m.path / ".historyfs" / "stats.json").read_text())
    assert stats["items"] == 24 and stats["api"]["calls"]["audio"] == {"200": 1}  # the stat's download served the read
    assert stats["cache_hits"] + stats["cache_misses"] == 1 and "pending_deletes" in stats
    assert stats["fuse_library"]["major"] == 3


def _fuse_calls(m: Mount) -> dict[str, int]:
    return dict(json.loads((m.path / ".historyfs" / "stats.json").read_text())["fuse_calls"])


def test_ls_l_costs_no_xattr_round_trips_by_default(live: tuple[Mount, FakeTenant]) -> None:
    m, t = live
    day = next(p for p in (m.path / "by-date").glob("*/*") if p.is_dir())
    listing = subprocess.run(["ls", "-lR", str(day)], capture_output=True, text=True, check=True).stdout
    files = [p for p in day.rglob("*") if p.is_file()]
    assert files and all(p.name in listing for p in files)
    calls = _fuse_calls(m)
    assert calls["getattr"] >= len(files) and "getxattr" not in calls  # the kernel never asked us
    assert os.listxattr(files[0]) == []
    with pytest.raises(OSError) as info:
        os.getxattr(files[0], "user.historyfs.item_id")
    assert info.value.errno == errno.EOPNOTSUPP


def test_xattrs_option_exposes_item_fields(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=23)
    (tmp_path / "mnt").mkdir()
    rel, item = sorted(_by_path(t).items())[1]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--xattrs") as m:
        assert os.getxattr(m.path / rel, "user.historyfs.item_id") == item.history_item_id.encode()
        assert "user.historyfs.voice_id" in os.listxattr(m.path / rel)
        before = _fuse_calls(m).get("getxattr", 0)
        subprocess.run(["ls", "-lR", str(m.path / "by-voice")], capture_output=True, check=True)
        files = [p for p in (m.path / "by-voice").rglob("*") if p.is_file()]
        assert _fuse_calls(m)["getxattr"] - before >= len(files)  # ls -l probes every file: why it is opt-in


def test_a_remount_knows_the_tree_and_the_sizes(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=10, seed=22)
    (tmp_path / "mnt").mkdir()
    rel, item = sorted(_by_path(t).items())[0]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        (m.path / rel).read_bytes()
    before = t.server.stats()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        assert os.stat(m.path / rel).st_size == len(t.library.audio_bytes(item.history_item_id))
        assert (m.path / rel).read_bytes() == t.library.audio_bytes(item.history_item_id)
    assert _audio_calls(t.server.stats()) == _audio_calls(before)  # served from the cache


def _audio_calls(stats: dict) -> int:  # type: ignore[type-arg]
    return sum(stats["requests"].get("audio", {}).values())


def test_tools_are_installed() -> None:
    for tool in ("rsync", "ffprobe", "sox", "cp"):
        assert shutil.which(tool), f"{tool} missing"
