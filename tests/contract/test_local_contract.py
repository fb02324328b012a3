"""The exporter contract for LocalExporter (a temporary folder), plus its local-only guarantees."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters import DestinationError, Exporter
from exporters.local import TMP_PREFIX, LocalExporter

from .contract import ExporterContract, upload


class LocalHarness:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self) -> Exporter:
        return LocalExporter(f"file://{self.root}")

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def write_foreign(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)


class TestLocalExporter(ExporterContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> LocalHarness:
        return LocalHarness(tmp_path / "dest")


def test_prepare_removes_stale_temporary_files(tmp_path: Path) -> None:
    stale = tmp_path / "by-voice" / f"{TMP_PREFIX}abc"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    exp = LocalExporter(str(tmp_path))
    assert exp.listing() == {}
    exp.prepare()
    assert not stale.exists()


def test_keys_cannot_escape_the_folder(tmp_path: Path) -> None:
    exp = LocalExporter(str(tmp_path / "d"))
    exp.prepare()
    for key in ("../evil.mp3", "/abs.mp3", "a//b.mp3", "by-voice/./x.mp3"):
        with pytest.raises(DestinationError, match="unsafe key"):
            exp.put_item(upload("itemAAAAAAAAAAAAAAAA", b"x", key=key))
    assert not (tmp_path / "evil.mp3").exists()


def test_delete_prunes_empty_folders_but_keeps_the_root(tmp_path: Path) -> None:
    root = tmp_path / "d"
    exp = LocalExporter(str(root))
    exp.prepare()
    up = upload("itemAAAAAAAAAAAAAAAA")
    exp.put_item(up)
    exp.delete([up.audio_key, up.sidecar_key])
    assert [p.name for p in root.iterdir()] == []
    exp.close()
    assert sorted(p.name for p in root.iterdir()) == [".historyfs-manifest.json"]


def test_files_are_world_readable_not_executable(tmp_path: Path) -> None:
    exp = LocalExporter(str(tmp_path))
    exp.prepare()
    up = upload("itemAAAAAAAAAAAAAAAA")
    exp.put_item(up)
    assert (tmp_path / up.audio_key).stat().st_mode & 0o777 == 0o644
