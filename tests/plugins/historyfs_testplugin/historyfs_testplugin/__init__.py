"""A third-party exporter plugin, written only against the public ``exporters`` interface.

``memory://NAME`` keeps objects in a process-wide dict (``STORES[NAME]``), so a test can run
``historyfs export memory://NAME`` in-process and inspect what was stored.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import IO

from exporters import Exporter, ObjectInfo

#: NAME -> key -> (bytes, info); guarded by LOCK.
STORES: dict[str, dict[str, tuple[bytes, ObjectInfo]]] = {}
LOCK = threading.Lock()


class MemoryExporter(Exporter):
    """Objects in memory, per destination name."""

    scheme = "memory"

    def __init__(self, url: str, options: object = None) -> None:
        super().__init__(url, options)  # type: ignore[arg-type]
        self.name = url.split("://", 1)[1].strip("/")
        with LOCK:
            STORES.setdefault(self.name, {})

    def _scan(self) -> Mapping[str, int]:
        with LOCK:
            return {k: len(v[0]) for k, v in STORES[self.name].items()}

    def _read(self, key: str) -> bytes | None:
        with LOCK:
            found = STORES[self.name].get(key)
        return found[0] if found else None

    def _write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        data = body.read()
        with LOCK:
            STORES[self.name][key] = (data, info)

    def _remove(self, keys: Sequence[str]) -> None:
        with LOCK:
            for k in keys:
                STORES[self.name].pop(k, None)


class HijackS3(MemoryExporter):
    """Claims the built-in "s3" scheme: the registry must refuse it."""

    scheme = "s3"


class NotAnExporter:
    """Registered as an exporter but is not one."""

    scheme = "broken"
