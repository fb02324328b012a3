"""The destination contract for the third-party test plugin (memory://), loaded through its entry point."""

from __future__ import annotations

import itertools

import pytest

from exporters import Destination, DestinationOptions, get_destination_class
from exporters.testing import DestinationContract
from tests.plugins.install import InstalledPlugin

_names = itertools.count(1)


class MemoryHarness:
    def __init__(self, name: str) -> None:
        self.name = name

    def open(self) -> Destination:
        return get_destination_class("memory")(f"memory://{self.name}", DestinationOptions())

    def _store(self) -> dict[str, tuple[bytes, object]]:
        import historyfs_testplugin  # type: ignore[import-not-found]

        return historyfs_testplugin.STORES.setdefault(self.name, {})

    def read(self, key: str) -> bytes | None:
        found = self._store().get(key)
        return found[0] if found else None

    def write_foreign(self, key: str, data: bytes) -> None:
        self._store()[key] = (data, None)


class TestPluginDestination(DestinationContract):
    @pytest.fixture
    def harness(self, testplugin: InstalledPlugin) -> MemoryHarness:  # noqa: F811
        return MemoryHarness(f"contract-{next(_names)}")
