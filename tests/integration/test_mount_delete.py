"""Real mounts, changes: rm deletes exactly the items asked for (with --allow-delete), everything else is refused."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]
UTC = ZoneInfo("UTC")


def _places(t: FakeTenant) -> dict[str, object]:
    items = [HistoryItem.from_json(d) for d in t.library.items()]
    return dict(Layout(UTC).place_all(items))


def _ids(t: FakeTenant) -> set[str]:
    return {d["history_item_id"] for d in t.library.items()}


def _setup(fake_tenant: Callable[..., FakeTenant], tmp_path: Path, items: int = 30) -> FakeTenant:
    (tmp_path / "mnt").mkdir()
    return fake_tenant(items=items, seed=31)


def test_rm_of_a_file_deletes_that_item_only(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = _setup(fake_tenant, tmp_path)
    before = _ids(t)
    victim, place = sorted(_places(t).items())[0]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete") as m:
        path = m.path / place.relpath("by-voice")  # type: ignore[attr-defined]
        subprocess.run(["rm", str(path)], check=True)
        assert not path.exists()
        assert not (m.path / place.relpath("by-date")).exists()  # type: ignore[attr-defined]
        assert _ids(t) == before - {victim}
        stats = (m.path / ".historyfs" / "stats.json").read_text()
        assert '"deletes_done": 1' in stats


def test_rm_r_of_a_day_deletes_exactly_its_items(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = _setup(fake_tenant, tmp_path)
    before = _ids(t)
    places = _places(t)
    day_parts = max((p.dir_parts("by-date")[:2] for p in places.values()),  # type: ignore[attr-defined]
                    key=lambda d: sum(1 for p in places.values() if p.dir_parts("by-date")[:2] == d))  # type: ignore[attr-defined]
    in_day = {i for i, p in places.items() if p.dir_parts("by-date")[:2] == day_parts}  # type: ignore[attr-defined]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete") as m:
        day = m.path / "by-date" / day_parts[0] / day_parts[1]
        done = subprocess.run(["rm", "-r", str(day)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert not day.exists()
        assert _ids(t) == before - in_day and in_day


@pytest.mark.parametrize("flags, code", [(("--read-only", "--allow-delete"), errno.EROFS), ((), None)])
def test_changes_are_refused_without_allow_delete(fake_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                                  flags: tuple[str, ...], code: int | None) -> None:
    t = _setup(fake_tenant, tmp_path, items=8)
    before = _ids(t)
    place = next(iter(_places(t).values()))
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", *flags) as m:
        path = m.path / place.relpath("by-date")  # type: ignore[attr-defined]
        folder = path.parent
        attempts = [lambda: os.unlink(path), lambda: os.rmdir(folder), lambda: os.mkdir(folder / "x"),
                    lambda: open(folder / "new.mp3", "wb"), lambda: os.rename(path, folder / "y.mp3"),
                    lambda: os.chmod(path, 0o600), lambda: open(path, "r+b"), lambda: os.truncate(path, 0),
                    lambda: os.symlink("a", folder / "l"), lambda: os.utime(path, (0, 0))]
        for attempt in attempts:
            with pytest.raises(OSError) as info:
                attempt()
            assert info.value.errno in ((code,) if code else (errno.EROFS, errno.EPERM)), attempt
        assert subprocess.run(["rm", "-rf", str(m.path / "by-date")], capture_output=True).returncode != 0
        assert path.exists()
    assert _ids(t) == before


def test_without_read_only_other_changes_are_eperm(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = _setup(fake_tenant, tmp_path, items=5)
    place = next(iter(_places(t).values()))
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete") as m:
        path = m.path / place.relpath("by-date")  # type: ignore[attr-defined]
        for attempt in (lambda: os.mkdir(path.parent / "x"), lambda: os.rename(path, path.parent / "y"),
                        lambda: open(path, "ab"), lambda: os.chmod(path, 0o600), lambda: os.setxattr(path, "user.a", b"1")):
            with pytest.raises(OSError) as info:
                attempt()
            assert info.value.errno == errno.EPERM, attempt
        assert path.exists()
