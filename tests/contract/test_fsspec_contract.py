"""The destination contract for the fsspec destination: on memory:// and over FTP on loopback (pyftpdlib).

The destination is made directly (the test plugin may claim memory:// while it is installed);
routing a URL to it is tested in tests/integration/test_export_fsspec.py.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from exporters import DestinationOptions
from exporters.fsspec_dest import FsspecDestination
from exporters.testing import DestinationContract
from tests.fixtures.ftp import FtpServer

_names = itertools.count(1)


class MemoryHarness:
    def __init__(self, name: str) -> None:
        import fsspec

        self.fs, self.root = fsspec.filesystem("memory"), f"/{name}"

    def open(self) -> FsspecDestination:
        return FsspecDestination(f"memory:/{self.root}", DestinationOptions())

    def read(self, key: str) -> bytes | None:
        path = f"{self.root}/{key}"
        return bytes(self.fs.cat_file(path)) if self.fs.isfile(path) else None

    def write_foreign(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.root}/{key}", data)


class FtpHarness:
    """Opens the destination over FTP; reads and writes the server's folder on disk, behind its back."""

    def __init__(self, server: FtpServer, folder: str) -> None:
        self.server, self.folder = server, folder

    def open(self) -> FsspecDestination:
        return FsspecDestination(self.server.url(self.folder), DestinationOptions())

    def read(self, key: str) -> bytes | None:
        path = self.server.home / self.folder / key
        return path.read_bytes() if path.is_file() else None

    def write_foreign(self, key: str, data: bytes) -> None:
        path = self.server.home / self.folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TestFsspecOnMemory(DestinationContract):
    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness(f"fsspec-contract-{next(_names)}")


class TestFsspecOverFtp(DestinationContract):
    @pytest.fixture
    def harness(self, ftp_env: FtpServer) -> FtpHarness:
        return FtpHarness(ftp_env, f"contract-{next(_names)}")


def test_it_uses_nothing_of_historyfs_but_the_public_exporters_interface() -> None:
    """Written as a third-party plugin would be: its only project imports are public names of ``exporters``."""
    import exporters

    tree = ast.parse(Path(exporters.__file__).with_name("fsspec_dest.py").read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    project = [n for n in imported if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").split(".")[0] in ("exporters", "historyfs"))]
    assert [n.module for n in project] == ["exporters"]
    assert {a.name for n in project for a in n.names} <= set(exporters.__all__)
    assert not [n for n in imported if isinstance(n, ast.Import) and any(a.name.split(".")[0] in ("exporters", "historyfs") for a in n.names)]
