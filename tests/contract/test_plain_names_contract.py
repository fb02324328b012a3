"""A plugin may name its attributes as it likes: one that uses every name the old base class used
(``_lock``, ``_manifest``, ``_dirty``, ``_flush_lock``...) and holds its own ``_lock`` inside every
primitive - the deadlock issue 13 found - passes the contract suite and a whole export."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from exporters import Destination, DestinationOptions, ObjectInfo, Stored, register
from exporters.registry import unregister
from exporters.testing import DestinationContract
from tests.integration.test_export_cli import TZ, Tenant, api_server, cli, expected_files, tenant  # noqa: F401 - fixtures

_STORES: dict[str, dict[str, tuple[bytes, ObjectInfo]]] = {}


class PlainNames(Destination):
    """Objects in a dict; state under the names a framework might have used."""

    scheme = "plain-names"

    def __init__(self, url: str, options: DestinationOptions) -> None:
        self._lock = threading.Lock()  # held inside every primitive below
        self._flush_lock = threading.Lock()
        self._load_lock = "not a lock"
        self._manifest = {"not": "the framework's"}
        self._found = None
        self._dirty = self._closed = True
        self.url, self.options, self.destination = url, "plugin's own", None
        self._store = _STORES.setdefault(url.split("://", 1)[1], {})

    def scan(self) -> list[Stored]:
        with self._lock:
            return [Stored(k, len(d), i.item_id, i.sha256 or None, i.format) for k, (d, i) in self._store.items()]

    def read(self, key: str) -> bytes | None:
        with self._lock:
            found = self._store.get(key)
        return found[0] if found else None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        with self._lock:
            self._store[key] = (body.read(), info)

    def remove(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._store.pop(key, None)


class PlainHarness:
    def __init__(self, name: str) -> None:
        self.name = name

    def open(self) -> Destination:
        return PlainNames(f"plain-names://{self.name}", DestinationOptions())

    def read(self, key: str) -> bytes | None:
        found = _STORES.get(self.name, {}).get(key)
        return found[0] if found else None

    def write_foreign(self, key: str, data: bytes) -> None:
        _STORES.setdefault(self.name, {})[key] = (data, ObjectInfo(None, "", len(data), "", ""))


class TestPlainNames(DestinationContract):
    @pytest.fixture
    def harness(self, request: pytest.FixtureRequest) -> PlainHarness:
        return PlainHarness(request.node.name)


@pytest.fixture
def plain_names() -> Any:
    register("plain-names", PlainNames)
    yield _STORES
    unregister("plain-names")


def test_a_whole_export_and_a_no_op_rerun(plain_names: Any, cli: Any, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    r = cli("export", "plain-names://cli", "--tz", TZ, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["uploaded"] == 24
    stored = {k: v[0] for k, v in _STORES["cli"].items() if not k.startswith(".historyfs")}
    assert stored == expected_files(tenant, tenant.items())
    again = json.loads(cli("export", "plain-names://cli", "--tz", TZ, "--json").out)
    assert (again["uploaded"], again["skipped"]) == (0, 24)
