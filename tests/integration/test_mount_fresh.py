"""Real mounts over time: new items appear, a crash mid-download heals, an API outage keeps the cache readable."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import _is_mounted, kill_hard, mounted, needs_fuse
from tests.fixtures.waiting import wait_until

pytestmark = [needs_fuse, pytest.mark.fuse]
UTC = ZoneInfo("UTC")
KEY = "dedicated-key"


def _paths(items: list[dict]) -> dict[str, str]:  # type: ignore[type-arg]
    parsed = [HistoryItem.from_json(d) for d in items]
    return {i: p.relpath("by-date") for i, p in Layout(UTC).place_all(parsed).items()}



@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    srv = FakeApiServer(items=8, seed=51, api_key=KEY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_new_item_appears_after_refresh(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=52)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--refresh", "1") as m:
        new = t.library.add_item()
        rel = _paths(t.library.items())[new["history_item_id"]]
        wait_until(lambda: rel.rsplit("/", 1)[1] in os.listdir(m.path / rel.rsplit("/", 1)[0])
                   if (m.path / rel.rsplit("/", 1)[0]).exists() else False, 20, "a refresh to show the new item")
        assert (m.path / rel).read_bytes() == t.library.audio_bytes(new["history_item_id"])


def test_a_lookup_of_a_missing_name_refreshes_once(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=53)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--refresh", "0") as m:
        new = t.library.add_item()
        rel = _paths(t.library.items())[new["history_item_id"]]
        assert os.stat(m.path / rel).st_mtime == new["date_unix"]  # found by the miss-refresh, no polling


def test_kill_9_during_a_download_then_remount_serves_correct_bytes(server: FakeApiServer, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    item_id, rel = next(iter(_paths(server.library.items()).items()))
    server.set_faults(Faults(bandwidth=50_000))  # a download takes seconds
    with mounted(tmp_path / "mnt", server.base_url, KEY, tmp_path / "cache") as m:
        fd = os.open(m.path / rel, os.O_RDONLY)
        try:
            os.pread(fd, 1000, 0)  # the download is under way
            kill_hard(m)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        wait_until(lambda: not _is_mounted(m.path), 10, "the kernel to drop the mount")  # auto_unmount: no dead endpoint left
    server.set_faults(Faults())
    with mounted(tmp_path / "mnt", server.base_url, KEY, tmp_path / "cache") as m:
        assert (m.path / rel).read_bytes() == server.library.audio_bytes(item_id)


@pytest.mark.timeout(90)  # the bound on an uncached read is the client's deadline (2 s here): never a hang
def test_api_down_serves_cached_items_and_eio_for_the_rest(server: FakeApiServer, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    paths = list(_paths(server.library.items()).items())
    (cached_id, cached), (_, uncached) = paths[0], paths[1]
    with mounted(tmp_path / "mnt", server.base_url, KEY, tmp_path / "cache", "--api-deadline", "2") as m:
        assert (m.path / cached).read_bytes() == server.library.audio_bytes(cached_id)
        server.set_faults(Faults(outage=True))
        assert (m.path / cached).read_bytes() == server.library.audio_bytes(cached_id)
        assert sorted(os.listdir(m.path / "by-date"))  # the tree stays
        with pytest.raises(OSError) as info:
            (m.path / uncached).read_bytes()
        assert info.value.errno == errno.EIO
        server.set_faults(Faults())
        assert (m.path / uncached).read_bytes() == server.library.audio_bytes(paths[1][0])  # a later open retries

