"""Real mounts, the views that find a clip: recent/, search/<words>/, by-model/, and --views.

Compared with the fake API through the client (what a search returns) and with the layout
(what each name must be). API calls are counted in the tenant's request log and in stats.json.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from historyfs.client import HistoryClient
from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.layout import Layout, Placement
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, mounted, needs_fuse
from tests.fixtures.waiting import wait_until

pytestmark = [needs_fuse, pytest.mark.fuse]
UTC = ZoneInfo("UTC")
#: A library big enough that one search needs two pages of 1,000 ("e" matches ~90% of its texts).
BIG = 2200


def _places(t: FakeTenant) -> dict[str, Placement]:
    return Layout(UTC).place_all([HistoryItem.from_json(d) for d in t.library.items()])


def _api_search(t: FakeTenant, words: str) -> list[str]:
    """What the API returns for the search, newest first (paged by the client)."""
    with HistoryClient(t.api_key, t.base_url) as client:
        return [i.history_item_id for i in client.iter_items(search=words)]


def _searches(t: FakeTenant) -> int:
    """List calls with a search the tenant has answered so far."""
    return sum(1 for e in t.library.stats.entries() if e["endpoint"] == "list" and "search=" in e["path"])


def _stats(m: Mount) -> dict[str, Any]:
    return json.loads((m.path / ".historyfs" / "stats.json").read_text())  # type: ignore[no-any-return]


def _names(places: dict[str, Placement], ids: list[str]) -> list[str]:
    return [places[i].flat_name(k) for i in ids for k in ("audio", "sidecar")]



@pytest.fixture(scope="module")
def big(fake_api: FakeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mount, FakeTenant]]:
    """One mount of a 2,200-item tenant, shared by the read-only search tests (--refresh 0)."""
    key = "views-big"
    t = FakeTenant(key, fake_api.base_url, fake_api.add_tenant(key, items=BIG, seed=61), fake_api)
    tmp = tmp_path_factory.mktemp("views")
    (tmp / "mnt").mkdir()
    try:
        with mounted(tmp / "mnt", t.base_url, key, tmp / "cache", "--refresh", "0") as m:
            yield m, t
    finally:
        fake_api.remove_tenant(key)


@pytest.mark.parametrize("words", ["e", "no such words anywhere", "声音", "café"])
def test_a_search_folder_lists_exactly_what_the_api_returns(big: tuple[Mount, FakeTenant], words: str) -> None:
    m, t = big
    before = _searches(t)
    listed = os.listdir(m.path / "search" / words)  # readdir order: newest first
    calls = _searches(t) - before
    ids = _api_search(t, words)
    assert listed == _names(_places(t), ids)
    assert calls == max(1, -(-len(ids) // 1000))  # one call per page of 1,000
    if words == "e":
        assert len(ids) > 1000 and calls >= 2
    assert words in os.listdir(m.path / "search")


def test_a_second_listing_within_the_lifetime_makes_no_api_call(big: tuple[Mount, FakeTenant]) -> None:
    m, t = big
    folder = m.path / "search" / "welcome"
    first = os.listdir(folder)
    before, stats = _searches(t), _stats(m)["search"]
    assert subprocess.run(["ls", "-l", str(folder)], capture_output=True).returncode == 0
    assert os.listdir(folder) == first and len(first) > 2
    after = _stats(m)["search"]
    assert _searches(t) == before
    assert after["cache_misses"] == stats["cache_misses"] and after["cache_hits"] >= stats["cache_hits"]
    assert after["ttl_seconds"] == 60


def test_names_file_managers_probe_make_no_api_call(big: tuple[Mount, FakeTenant]) -> None:
    m, t = big
    os.listdir(m.path / "search" / "morning")
    before = _searches(t)
    probes = [".hidden", ".directory", "autorun.inf", "Desktop.ini", "folder.jpg", ".xdg-volume-info", ".DS_Store",
              "morning/.hidden", "morning/Desktop.ini"]
    for name in probes:
        with pytest.raises(FileNotFoundError):
            os.stat(m.path / "search" / name)
    assert _searches(t) == before
    assert _stats(m)["search"]["probes_ignored"] >= 1
    assert "autorun.inf" not in os.listdir(m.path / "search")


def test_cp_and_ffprobe_read_exact_bytes_from_search_recent_and_by_model(big: tuple[Mount, FakeTenant],
                                                                        tmp_path: Path) -> None:
    m, t = big
    items = t.library.items()
    item = next(d for d in items[:50] if d["text"] and d["text"][0].isalpha() and "/" not in d["text"])
    words = " ".join(item["text"].split()[:3])
    place = _places(t)[item["history_item_id"]]
    data = t.library.audio_bytes(item["history_item_id"])
    subprocess.run(["cp", "-r", str(m.path / "search" / words), str(tmp_path / "copy")], check=True)
    by_id, places = {d["history_item_id"]: d for d in items}, _places(t)
    expected: dict[str, bytes] = {}
    for i in _api_search(t, words):
        expected[places[i].flat_name()] = t.library.audio_bytes(i)
        expected[places[i].flat_name("sidecar")] = HistoryItem.from_json(by_id[i]).to_json_bytes()
    assert {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()} == expected
    local = tmp_path / "local.mp3"
    local.write_bytes(data)
    probe = ["ffprobe", "-v", "error", "-show_entries", "format=duration,size:stream=codec_name,sample_rate", "-of", "json"]
    direct = json.loads(subprocess.run([*probe, str(local)], check=True, capture_output=True, text=True).stdout)
    for view in ("recent", "by-model"):
        path = m.path / place.relpath(view)
        assert path.read_bytes() == data
        through = json.loads(subprocess.run([*probe, str(path)], check=True, capture_output=True, text=True).stdout)
        assert through == direct and float(direct["format"]["duration"]) > 0
    inodes = {os.stat(m.path / place.relpath(v)).st_ino for v in ("by-date", "by-model", "by-voice", "recent")}
    assert inodes == {os.stat(m.path / "search" / words / place.flat_name()).st_ino}


def test_rm_in_by_model_deletes_everywhere_and_rm_r_of_a_search_deletes_nothing(
        fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=30, seed=62)
    (tmp_path / "mnt").mkdir()
    places = _places(t)
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete", "--refresh", "0") as m:
        expected = {p.relpath(v, k) for p in places.values() for v in ("by-model",) for k in ("audio", "sidecar")}
        assert {str(p.relative_to(m.path)) for p in (m.path / "by-model").rglob("*") if p.is_file()} == expected
        words = "the"
        listed = os.listdir(m.path / "search" / words)
        ids_before = {d["history_item_id"] for d in t.library.items()}
        done = subprocess.run(["rm", "-r", str(m.path / "search" / words)], capture_output=True, text=True)
        assert done.returncode != 0 and "Operation not permitted" in done.stderr
        assert {d["history_item_id"] for d in t.library.items()} == ids_before
        assert os.listdir(m.path / "search" / words) == listed
        with pytest.raises(PermissionError):
            os.unlink(m.path / "recent" / os.listdir(m.path / "recent")[0])
        victim = _api_search(t, words)[0]  # newest match: in recent/ and in the search
        place = places[victim]
        seen = [m.path / place.relpath(v) for v in ("by-date", "by-voice", "recent", f"search/{words}")]
        for path in seen:
            os.stat(path)  # the kernel now caches each of them
        subprocess.run(["rm", str(m.path / place.relpath("by-model"))], check=True)
        assert victim not in {d["history_item_id"] for d in t.library.items()}
        for path in [m.path / place.relpath("by-model"), *seen]:
            assert not path.exists(), path
        assert place.flat_name() not in os.listdir(m.path / "search" / words)
        os.rmdir(m.path / "search" / words)  # forgets the query, deletes nothing
        assert words not in os.listdir(m.path / "search")
        assert {d["history_item_id"] for d in t.library.items()} == ids_before - {victim}


def test_a_new_clip_is_first_in_recent_after_one_refresh(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=63)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--refresh", "1", "--recent", "4") as m:
        recent = m.path / "recent"
        listed = os.listdir(recent)
        assert len(listed) == 8
        oldest = recent / listed[-1]
        os.stat(oldest)  # cached by the kernel: must be dropped when it leaves recent/
        new = t.library.add_item()
        place = _places(t)[new["history_item_id"]]
        name = place.flat_name()
        wait_until(lambda: os.listdir(recent)[:1] == [name], 20, "recent/ to show the new item first")
        # sorted by name, newest last: the names start with the date and time
        assert sorted(os.listdir(recent))[-2:] == sorted([name, place.flat_name("sidecar")])
        assert (recent / name).read_bytes() == t.library.audio_bytes(new["history_item_id"])
        assert len(os.listdir(recent)) == 8 and not oldest.exists()


def test_views_by_date_shows_only_that_view(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=8, seed=64)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--views", "by-date") as m:
        assert sorted(os.listdir(m.path)) == [".historyfs", "by-date"]
        place = next(iter(_places(t).values()))
        assert (m.path / place.relpath("by-date")).exists()
        for missing in ("by-voice", "by-model", "recent", "search/hello"):
            assert not (m.path / missing).exists()
        assert _searches(t) == 0


def test_a_search_while_the_api_is_down_fails_with_eio(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    with FakeApiServer(items=5, seed=65, api_key="k") as srv, \
            mounted(tmp_path / "mnt", srv.base_url, "k", tmp_path / "cache", "--api-deadline", "2", "--refresh", "0") as m:
        srv.set_faults(Faults(outage=True))
        with pytest.raises(OSError) as info:
            os.listdir(m.path / "search" / "hello")
        assert info.value.errno == errno.EIO
        srv.set_faults(Faults())
        os.listdir(m.path / "search" / "hello")  # not remembered as failed: asked again
        assert _stats(m)["search"]["failures"] >= 1
