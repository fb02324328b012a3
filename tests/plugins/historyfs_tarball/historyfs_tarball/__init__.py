"""tarball:///path/to/mirror.tar - every object a member of one (uncompressed) tar file.

Written from docs/PLUGINS.md alone, as an outside author would: the destination issue 13 tried,
again, with the names that deadlocked the old base class (``self._lock``, held in every
primitive, and ``self._manifest``). Each member's time is the item's date and PAX headers record
what it is, so a run killed before historyfs saved its manifest is recovered from ``scan``.
Every change rewrites the archive beside it and renames it over the old one (atomic).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import threading
from collections.abc import Sequence
from typing import IO
from urllib.parse import unquote, urlsplit

from exporters import ConfigError, Destination, DestinationError, DestinationOptions, ObjectInfo, Stored

PAX = {"item_id": "HISTORYFS.item_id", "sha256": "HISTORYFS.sha256", "format": "HISTORYFS.format"}


class TarballDestination(Destination):
    scheme = "tarball"

    def __init__(self, url: str, options: DestinationOptions) -> None:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.endswith(".tar"):
            raise ConfigError(f"bad destination {url!r}: expected tarball:///path/to/file.tar")
        self.path = unquote(parts.path)
        self._lock = threading.Lock()  # guards _manifest and the file
        self._manifest: dict[str, tuple[tarfile.TarInfo, bytes]] | None = None  # key -> member: this plugin's own

    def check(self) -> None:
        if not os.path.isdir(os.path.dirname(self.path) or "."):
            raise ConfigError(f"cannot use {self.path}: its folder does not exist")

    def scan(self) -> list[Stored]:
        with self._lock:
            self._manifest = None  # read the file again: another program may have changed it
            return [_stored(info, len(data)) for info, data in self._members().values()]

    def read(self, key: str) -> bytes | None:
        with self._lock:
            found = self._members().get(key)
        return found[1] if found else None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        data = body.read()
        member = tarfile.TarInfo(key)
        member.size, member.mode = len(data), 0o644
        member.mtime = int(info.date.timestamp()) if info.date else 0
        if info.item_id is not None:
            member.pax_headers = {PAX["item_id"]: info.item_id, PAX["sha256"]: info.sha256, PAX["format"]: info.format}
        with self._lock:
            members = dict(self._members())
            members[key] = (member, data)
            self._save(members)

    def remove(self, keys: Sequence[str]) -> None:
        with self._lock:
            members = {k: v for k, v in self._members().items() if k not in keys}
            self._save(members)

    def _members(self) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
        if self._manifest is None:
            self._manifest = {}
            if os.path.exists(self.path):
                try:
                    with tarfile.open(self.path, "r:") as tar:
                        for m in tar.getmembers():
                            f = tar.extractfile(m)
                            self._manifest[m.name] = (m, f.read() if f else b"")
                except (OSError, tarfile.TarError) as exc:
                    raise DestinationError(f"cannot read {self.path}: {exc}") from None
        return self._manifest

    def _save(self, members: dict[str, tuple[tarfile.TarInfo, bytes]]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tarball-", dir=os.path.dirname(self.path) or ".")
        try:
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                for member, data in members.values():
                    tar.addfile(member, io.BytesIO(data))
            os.replace(tmp, self.path)
        except OSError as exc:
            os.unlink(tmp)
            raise DestinationError(f"cannot write {self.path}: {exc}") from None
        self._manifest = members


def _stored(info: tarfile.TarInfo, size: int) -> Stored:
    pax = info.pax_headers
    return Stored(info.name, size, pax.get(PAX["item_id"]), pax.get(PAX["sha256"]), pax.get(PAX["format"]))
