"""A third-party destination plugin, written only against the public ``exporters`` interface.

``memory://NAME`` keeps objects in a process-wide dict (``STORES[NAME]``), so a test can run
``historyfs export memory://NAME`` in-process and inspect what was stored, with what ObjectInfo.
With ``--dest-opt log=FILE`` every write and removal is also appended to FILE (one JSON line,
flushed and fsynced) and replayed when the destination is opened, so the store outlives the
process: what a ``kill -9`` test needs. It records each object's ObjectInfo, so ``scan`` tells
the item id and sha256 of every object and a run that lost its manifest recovers.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Sequence
from typing import IO

from exporters import ConfigError, Destination, DestinationOptions, ObjectInfo, Stored

#: NAME -> key -> (bytes, info); guarded by LOCK.
STORES: dict[str, dict[str, tuple[bytes, ObjectInfo | None]]] = {}
LOCK = threading.Lock()


class MemoryDestination(Destination):
    """Objects in memory, per destination name (optionally logged to a file)."""

    scheme = "memory"
    dest_options = {"log": "a file that keeps the objects across processes (appended to, replayed at start)"}

    def __init__(self, url: str, options: DestinationOptions) -> None:
        self.name = url.split("://", 1)[1].strip("/")
        if not self.name:
            raise ConfigError(f"bad destination {url!r}: expected memory://NAME")
        self.log = options.extra.get("log")
        with LOCK:
            store = STORES.setdefault(self.name, {})
            if self.log and os.path.exists(self.log):
                _replay(self.log, store)

    def scan(self) -> list[Stored]:
        with LOCK:
            return [_stored(k, data, info) for k, (data, info) in STORES[self.name].items()]

    def read(self, key: str) -> bytes | None:
        with LOCK:
            found = STORES[self.name].get(key)
        return found[0] if found else None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        data = body.read()
        with LOCK:
            self._append({"put": key, "data": base64.b64encode(data).decode(), "item_id": info.item_id, "sha256": info.sha256, "format": info.format})
            STORES[self.name][key] = (data, info)

    def remove(self, keys: Sequence[str]) -> None:
        with LOCK:
            for k in keys:
                self._append({"remove": k})
                STORES[self.name].pop(k, None)

    def _append(self, record: dict[str, object]) -> None:
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())


def _stored(key: str, data: bytes, info: ObjectInfo | None) -> Stored:
    if info is None or info.item_id is None:
        return Stored(key, len(data))
    return Stored(key, len(data), info.item_id, info.sha256, info.format)


def _replay(log: str, store: dict[str, tuple[bytes, ObjectInfo | None]]) -> None:
    with open(log, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill: that write never returned
            if "remove" in rec:
                store.pop(rec["remove"], None)
                continue
            data = base64.b64decode(rec["data"])
            store[rec["put"]] = (data, ObjectInfo(rec["item_id"], rec["sha256"], len(data), rec["format"], ""))


class HijackS3(MemoryDestination):
    """Claims the built-in "s3" scheme: the registry must refuse it."""

    scheme = "s3"


class NotAnExporter:
    """Registered as a destination but is not one."""

    scheme = "broken"
