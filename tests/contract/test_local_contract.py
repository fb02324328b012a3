"""The destination contract for the folder destination (a temporary folder), plus its folder-only guarantees."""

from __future__ import annotations

from pathlib import Path

import pytest

import os

from exporters import DestinationError, DestinationOptions, Exporter
from exporters.local import TMP_PREFIX, FolderDestination
from exporters.testing import DestinationContract, upload


class LocalHarness:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self) -> FolderDestination:
        return FolderDestination(f"file://{self.root}", DestinationOptions())

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def write_foreign(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)  # in place: the file keeps its extended attributes


class TestFolderDestination(DestinationContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> LocalHarness:
        return LocalHarness(tmp_path / "dest")


def test_prepare_removes_stale_temporary_files(tmp_path: Path) -> None:
    stale = tmp_path / "by-voice" / f"{TMP_PREFIX}abc"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    exp = folder(tmp_path)
    assert exp.listing() == {}
    exp.prepare()
    assert not stale.exists()


def test_keys_cannot_escape_the_folder(tmp_path: Path) -> None:
    exp = folder(tmp_path / "d")
    exp.prepare()
    for key in ("../evil.mp3", "/abs.mp3", "a//b.mp3", "by-voice/./x.mp3"):
        with pytest.raises(DestinationError, match="unsafe key"):
            exp.put_item(upload("itemAAAAAAAAAAAAAAAA", b"x", key=key))
    assert not (tmp_path / "evil.mp3").exists()


def test_delete_prunes_empty_folders_but_keeps_the_root(tmp_path: Path) -> None:
    root = tmp_path / "d"
    exp = folder(root)
    exp.prepare()
    up = upload("itemAAAAAAAAAAAAAAAA")
    exp.put_item(up)
    exp.delete([up.audio_key, up.sidecar_key])
    assert [p.name for p in root.iterdir()] == []
    exp.close()
    assert sorted(p.name for p in root.iterdir()) == [".historyfs-manifest.json"]


def test_files_are_world_readable_not_executable(tmp_path: Path) -> None:
    exp = folder(tmp_path)
    exp.prepare()
    up = upload("itemAAAAAAAAAAAAAAAA")
    exp.put_item(up)
    assert (tmp_path / up.audio_key).stat().st_mode & 0o777 == 0o644


def test_files_carry_the_item_date_and_what_they_are(tmp_path: Path) -> None:
    """mtime = the item's creation time (as on the mount); the item id, sha256 and format as user xattrs."""
    exp = folder(tmp_path)
    exp.prepare()
    up = upload("itemAAAAAAAAAAAAAAAA")
    audio, sidecar = exp.put_item(up)
    assert up.date is not None
    for key, entry in ((up.audio_key, audio), (up.sidecar_key, sidecar)):
        path = tmp_path / key
        assert path.stat().st_mtime == up.date.timestamp()
        assert os.getxattr(path, "user.historyfs.item_id") == up.item_id.encode()
        assert os.getxattr(path, "user.historyfs.sha256") == entry.sha256.encode()
        assert os.getxattr(path, "user.historyfs.format") == entry.format.encode()


def folder(root: Path) -> Exporter:
    return Exporter(FolderDestination(str(root), DestinationOptions()))
