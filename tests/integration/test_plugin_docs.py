"""docs/PLUGINS.md cannot drift from the code: its example plugin, taken from the page as printed, is
installed, passes exporters.testing and runs `historyfs export`. And a plugin written from that
page alone (tests/plugins/historyfs_tarball, with ``self._lock`` and ``self._manifest``) does too.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from exporters import Destination, DestinationOptions, get_destination_class
from exporters.testing import DestinationContract
from tests.integration.test_export_cli import TZ, Tenant, api_server, expected_files, tenant  # noqa: F401 - fixtures
from tests.plugins.install import InstalledPlugin, installed

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "PLUGINS.md"
TARBALL = ROOT / "tests" / "plugins" / "historyfs_tarball"


def doc_example(target: Path) -> Path:
    """Every ```` ``` ```` block that follows an ``<!-- example: PATH -->`` line of the page, written to PATH under ``target``."""
    blocks = re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", DOC.read_text(), re.S)
    assert {p for p, _ in blocks} == {"pyproject.toml", "historyfs_sqlite/__init__.py"}
    for path, text in blocks:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_text(text)
    return target


@pytest.fixture(scope="module")
def sqlite_plugin() -> Iterator[InstalledPlugin]:
    with tempfile.TemporaryDirectory(prefix="historyfs-doc-plugin-") as folder, installed(doc_example(Path(folder))) as plugin:
        yield plugin


@pytest.fixture(scope="module")
def tarball_plugin() -> Iterator[InstalledPlugin]:
    with installed(TARBALL) as plugin:
        yield plugin


class SqliteHarness:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> Destination:
        return get_destination_class("sqlite")(f"sqlite://{self.path}", DestinationOptions())

    def read(self, key: str) -> bytes | None:
        if not self.path.exists():
            return None
        with sqlite3.connect(self.path) as db:
            try:
                rows = db.execute("SELECT data FROM objects WHERE key = ?", (key,)).fetchall()
            except sqlite3.OperationalError:
                return None
        return bytes(rows[0][0]) if rows else None

    def write_foreign(self, key: str, data: bytes) -> None:
        from historyfs_sqlite import COLUMNS  # type: ignore[import-not-found]

        with sqlite3.connect(self.path) as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS objects ({COLUMNS})")
            db.execute("INSERT OR REPLACE INTO objects (key, data) VALUES (?, ?)", (key, data))


class TarHarness:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> Destination:
        return get_destination_class("tarball")(f"tarball://{self.path}", DestinationOptions())

    def _members(self) -> dict[str, bytes]:
        if not self.path.exists():
            return {}
        with tarfile.open(self.path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]

    def read(self, key: str) -> bytes | None:
        return self._members().get(key)

    def write_foreign(self, key: str, data: bytes) -> None:
        """Add or replace one member as another program would (the others kept as they are)."""
        members: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
        if self.path.exists():
            with tarfile.open(self.path) as tar:
                members = {m.name: (m, tar.extractfile(m).read()) for m in tar.getmembers()}  # type: ignore[union-attr]
        foreign = tarfile.TarInfo(key)
        foreign.size = len(data)
        members[key] = (foreign, data)
        with tarfile.open(self.path, "w", format=tarfile.PAX_FORMAT) as tar:
            for info, content in members.values():
                tar.addfile(info, io.BytesIO(content))


class TestTheDocsExample(DestinationContract):
    @pytest.fixture
    def harness(self, sqlite_plugin: InstalledPlugin, tmp_path: Path) -> SqliteHarness:
        return SqliteHarness(tmp_path / "test.db")


class TestAPluginWrittenFromTheDocs(DestinationContract):
    @pytest.fixture
    def harness(self, tarball_plugin: InstalledPlugin, tmp_path: Path) -> TarHarness:
        return TarHarness(tmp_path / "mirror.tar")


def export(plugin: InstalledPlugin, t: Tenant, *args: str) -> subprocess.CompletedProcess[str]:
    env = plugin.env({**os.environ, "ELEVENLABS_API_KEY": t.key, "HISTORYFS_API_URL": t.server.base_url})
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    return subprocess.run([sys.executable, "-m", "historyfs", "export", *args, "--tz", TZ], env=env, capture_output=True, text=True, timeout=120)


def test_the_docs_example_runs_historyfs_export(sqlite_plugin: InstalledPlugin, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "voices.db"
    first = export(sqlite_plugin, tenant, f"sqlite://{db}", "--dest-opt", "table=voices", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["uploaded"] == 24
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT key, data FROM voices WHERE key NOT LIKE '.historyfs%'").fetchall())
        created = dict(conn.execute("SELECT item_id, created FROM voices WHERE format = 'json'").fetchall())
    assert rows == expected_files(tenant, tenant.items())
    item = tenant.items()[0]
    assert created[item.history_item_id] == datetime.fromtimestamp(item.date_unix, timezone.utc).isoformat()  # the item's date reached the plugin
    again = export(sqlite_plugin, tenant, f"sqlite://{db}", "--dest-opt", "table=voices", "--json")
    assert json.loads(again.stdout)["uploaded"] == 0
    bad = export(sqlite_plugin, tenant, f"sqlite://{db}", "--dest-opt", "tabel=x")
    assert bad.returncode == 1 and bad.stderr.strip() == "historyfs export: error: unknown --dest-opt 'tabel' for sqlite:// destinations (they take: table)"


def test_a_plugin_written_from_the_docs_runs_historyfs_export(tarball_plugin: InstalledPlugin, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    tar_path = tmp_path / "mirror.tar"
    first = export(tarball_plugin, tenant, f"tarball://{tar_path}", "--json")
    assert first.returncode == 0, first.stderr
    assert TarHarness(tar_path)._members().keys() >= expected_files(tenant, tenant.items()).keys()
    with tarfile.open(tar_path) as tar:
        member = tar.getmember(tenant.placements()[tenant.items()[0].history_item_id].relpath("by-voice"))
    assert member.mtime == tenant.items()[0].date_unix  # the item's date, as the docs promise
    assert json.loads(export(tarball_plugin, tenant, f"tarball://{tar_path}", "--json").stdout)["uploaded"] == 0


def test_the_page_is_linked_from_the_readme_and_from_export_help() -> None:
    assert "docs/PLUGINS.md" in (ROOT / "README.md").read_text()
    r = subprocess.run([sys.executable, "-m", "historyfs", "export", "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "docs/PLUGINS.md" in r.stdout
