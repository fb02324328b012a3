"""Exporter: the framework around one Destination plugin - the manifest, hashing, recovery, locks.

The runner uses only this class:

    exporter = Exporter(destination)
    exporter.check()                   # read-only: is the destination usable? (ConfigError if not)
    exporter.listing() -> {key: Entry} # ONE listing: what this exporter holds (item id, sha256, size)
    exporter.recover(keys) -> {key: Entry}  # present but unrecorded (a killed run's), from what the store recorded
    exporter.prepare()                 # before the first change: clear debris of interrupted runs
    exporter.put_item(upload)          # one item's audio (hashed on its way) and sidecar; from many threads
    exporter.delete(keys)              # remove objects this exporter wrote
    exporter.abort()                   # cancel in-flight transfers (Ctrl-C), from any thread
    exporter.flush(); exporter.close(persist=True)

The manifest (``.historyfs-manifest.json`` under the destination, see ``manifest``) records what
was written. Bodies (see ``bodies``): a download is read once and hashed on the way. A store
without ``stream_threshold`` gets every object as a seekable body whose hash and size are known
first (so metadata such as S3's x-amz-meta-historyfs-sha256 can be set on the object itself); so
does every store for a local file (a mount's cache: hashed in place). A store that streams gets
a download held in memory up to its threshold as one ``write``, and a larger one (announced or
not) through ``write_stream`` chunk by chunk as it arrives.

Locks: the state below is guarded by ``_lock``; manifest writes are serialized by ``_flush_lock``
(taken before ``_lock``). Neither is ever visible to the plugin, and ``_lock`` is never held while
a primitive runs.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Sequence
from itertools import chain
from typing import final

from .base import Cancelled, Chunks, Destination, DestinationError, ItemUpload, ObjectInfo, Stored
from .bodies import HashingChunks, Spooled, hash_file, spool, take
from .manifest import MANIFEST_KEY, Entry
from .manifest import dump as _dump_manifest
from .manifest import parse as _parse_manifest


@final
class Exporter:
    """One destination as a run uses it. Thread-safe: ``put_item`` is called from many threads at once."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination  # read-only
        self.scheme = type(destination).scheme
        self._lock = threading.Lock()  # guards _manifest, _dirty, _found
        self._flush_lock = threading.Lock()  # one manifest write at a time (taken before _lock)
        self._load_lock = threading.Lock()  # one first read of the manifest
        self._manifest: dict[str, Entry] | None = None
        self._found: dict[str, Stored] | None = None  # the last scan: every object present
        self._dirty = False
        self._closed = False

    # -- reading what is there -----------------------------------------------------------------
    def check(self) -> None:
        """Fail early (one clear ConfigError) if the destination is unusable; changes nothing."""
        self.destination.check()

    def listing(self) -> dict[str, Entry]:
        """What this exporter holds: manifest entries whose object is present at the recorded size."""
        found = {s.key: s for s in self.destination.scan()}
        manifest = self._entries()
        with self._lock:
            self._found = found
            return {k: e for k, e in manifest.items() if k in found and found[k].size == e.size}

    def recover(self, keys: Sequence[str]) -> dict[str, Entry]:
        """Entries for those ``keys`` that are present but not validly recorded (a run killed before
        it saved the manifest), from what the store recorded with each object; recorded from now on.
        Present means: in the last ``listing`` (made now if there was none)."""
        if self._found is None:
            self.listing()
        manifest = self._entries()
        with self._lock:
            found = self._found or {}
            missing = [k for k in dict.fromkeys(keys) if k in found and not _matches(manifest.get(k), found[k])]
            known = {k: found[k] for k in missing if _complete(found[k])}
        rest = [k for k in missing if k not in known]
        if rest:
            known.update((s.key, s) for s in self.destination.describe(rest) if s.key in rest and _complete(s))
        with self._lock:
            out = {k: Entry(s.item_id or "", s.sha256 or "", s.size, s.format or "") for k, s in known.items() if found[k].size == s.size}
            manifest.update(out)
            self._dirty = self._dirty or bool(out)
        return out

    # -- changing it ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Called once before the first change of a run (never in a dry run)."""
        self.destination.prepare()

    def put_item(self, upload: ItemUpload) -> list[Entry]:
        """Store one item's audio (hashed on its way) then its sidecar; record both in the manifest."""
        self._entries()  # the manifest is read before anything is written
        audio = self._put_audio(upload)
        sidecar = self._put_bytes(upload.sidecar_key, upload.sidecar, hashlib.sha256(upload.sidecar).hexdigest(), upload, "application/json", "json")
        return [audio, sidecar]

    def delete(self, keys: Sequence[str]) -> None:
        """Remove objects this exporter wrote (keys not in its manifest are refused)."""
        manifest = self._entries()
        with self._lock:
            unknown = [k for k in keys if k not in manifest]
        if unknown:
            raise DestinationError(f"refusing to delete {unknown[0]!r}: not written by historyfs")
        self.destination.remove(list(keys))
        with self._lock:
            for k in keys:
                manifest.pop(k, None)
            self._dirty = True

    def abort(self) -> None:
        """Stop transfers in flight (the run is being interrupted); completed ones stay recorded."""
        self.destination.abort()

    def flush(self) -> None:
        """Write the manifest now if it changed (atomically, as any object; serialized outside the lock)."""
        with self._flush_lock:
            with self._lock:
                if not self._dirty or self._manifest is None:
                    return
                entries, self._dirty = dict(self._manifest), False
            data = _dump_manifest(entries)
            try:
                self.destination.write(MANIFEST_KEY, io.BytesIO(data), ObjectInfo(None, hashlib.sha256(data).hexdigest(), len(data), "json", "application/json"))
            except BaseException:
                with self._lock:
                    self._dirty = True
                raise

    def close(self, *, persist: bool = True) -> None:
        """Persist the manifest (unless ``persist`` is false) and release resources; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if persist:
                self.flush()
        finally:
            self.destination.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------
    def _put_audio(self, upload: ItemUpload) -> Entry:
        """A local file: hashed, then handed over whole. A download: in memory up to the store's
        threshold and then one ``write``, else streamed as it arrives; spooled if the store cannot stream."""
        if isinstance(upload.audio, io.IOBase):
            return self._put_spooled(upload, hash_file(upload.audio, upload.cancel))
        threshold = self.destination.stream_threshold
        if threshold is None:
            return self._put_spooled(upload, spool(upload.audio, upload.cancel))  # hashed as it is spooled
        hashed = HashingChunks(upload.audio, upload.cancel)
        head, rest = take(iter(hashed), threshold)
        if rest is None:
            return self._put_bytes(upload.audio_key, b"".join(head), hashed.sha256, upload, upload.content_type)
        info = _info(upload, "", upload.size_hint or 0, upload.content_type)
        self.destination.write_stream(upload.audio_key, Chunks(chain(head, rest), hashed), info)
        if not hashed.finished:
            raise DestinationError(f"{upload.audio_key}: the store stopped reading the audio before its end")
        return self._record(upload.audio_key, Entry(upload.item_id, hashed.sha256, hashed.size, upload.format))

    def _put_spooled(self, upload: ItemUpload, body: Spooled) -> Entry:
        try:
            self.destination.write(upload.audio_key, body.file, _info(upload, body.sha256, body.size, upload.content_type))
        finally:
            body.file.close()
        return self._record(upload.audio_key, Entry(upload.item_id, body.sha256, body.size, upload.format))

    def _put_bytes(self, key: str, data: bytes, sha256: str, upload: ItemUpload, content_type: str, fmt: str | None = None) -> Entry:
        info = _info(upload, sha256, len(data), content_type, fmt)
        self.destination.write(key, io.BytesIO(data), info)  # BytesIO over bytes: read() hands back the same object, no copy
        return self._record(key, Entry(upload.item_id, sha256, len(data), info.format))

    def _record(self, key: str, entry: Entry) -> Entry:
        with self._lock:
            assert self._manifest is not None  # read by put_item first
            self._manifest[key] = entry
            self._dirty = True
        return entry

    def _entries(self) -> dict[str, Entry]:
        """The manifest, read on first use (the one read of a primitive under a lock: ``_load_lock``)."""
        with self._lock:
            if self._manifest is not None:
                return self._manifest
        with self._load_lock:
            with self._lock:
                if self._manifest is not None:
                    return self._manifest
            entries = _parse_manifest(self.destination.read(MANIFEST_KEY))
            with self._lock:
                self._manifest = entries
                return entries


def _info(upload: ItemUpload, sha256: str, size: int, content_type: str, fmt: str | None = None) -> ObjectInfo:
    if upload.cancel.is_set():
        raise Cancelled("transfer cancelled")
    return ObjectInfo(upload.item_id, sha256, size, fmt or upload.format, content_type, upload.date, upload.metadata)


def _complete(s: Stored) -> bool:
    return bool(s.item_id) and bool(s.sha256)


def _matches(entry: Entry | None, found: Stored) -> bool:
    return entry is not None and entry.size == found.size

