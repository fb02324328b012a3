"""The exporter plugin interface: what a destination must do, and the bookkeeping every destination shares.

A destination (S3 prefix, local folder, a third-party store) is an ``Exporter``. The runner uses
only its public, final methods:

    exporter.check()                  # read-only: is the destination usable? (ConfigError if not)
    exporter.prepare()                # before the first change: clear debris of interrupted runs
    exporter.listing() -> {key: Entry}  # ONE listing: what this exporter holds (item id, sha256, size)
    exporter.put_item(upload)         # one item's audio (a stream of chunks) and metadata sidecar
    exporter.delete(keys)             # remove objects this exporter wrote
    exporter.abort()                  # cancel in-flight transfers (Ctrl-C)
    exporter.close()                  # persist the manifest, release resources

A plugin implements four primitives over its storage (``_scan``, ``_read``, ``_write``,
``_remove``), optionally ``_check``/``_prepare``/``_abort``/``_release``, and optionally streaming
(``_stream_threshold`` and ``_write_stream``). This base class owns the manifest
(``.historyfs-manifest.json`` under the destination, see ``manifest``), the hashing of every body
(each byte is hashed once, on its way), and thread safety (``put_item`` is called from many
threads at once).

Bodies (see ``bodies``): a download is read once and hashed on the way. A store that does not
stream gets every object as a seekable file whose hash and size are known first (so metadata such
as S3's x-amz-meta-historyfs-sha256 can be set on the object itself); so does every store for a
local file (a mount's cache: hashed in place, then given whole, the store reads it as it likes).
A store that streams says from which size (``_stream_threshold``): a download is held in memory
up to that size and then handed over as ``bytes``; one that grows past it (announced or not: a
response without Content-Length streams too) goes to ``_write_stream`` chunk by chunk as it
arrives, so the upload overlaps the download. Its sha256 is recorded in the manifest; it is not
known when the store starts the object, so ``ObjectInfo.sha256`` is "" for such a write.

Keys are relative, '/'-separated paths under the destination, e.g.
``by-voice/Rachel/2026-11/2026-11-23/14-03-27 Hello [ja9xsmfG].mp3``.
"""

from __future__ import annotations

import hashlib
import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import IO, ClassVar

from historyfs.errors import ConfigError, HistoryFSError

from .bodies import SPOOL_MEMORY_LIMIT, Cancelled, HashingChunks, Spooled, copy_body, hash_file, spool, take
from .manifest import MANIFEST_KEY, MANIFEST_VERSION, Entry
from .manifest import dump as _dump_manifest
from .manifest import parse as _parse_manifest

__all__ = ["MANIFEST_KEY", "MANIFEST_VERSION", "SPOOL_MEMORY_LIMIT", "Cancelled", "DestinationError", "DestinationOptions", "Entry", "Exporter",
           "ItemUpload", "ObjectInfo", "PluginError", "Spooled", "copy_body", "spool"]


class PluginError(ConfigError):
    """An exporter plugin cannot be registered or loaded; the message names the plugin."""


class DestinationError(HistoryFSError):
    """The destination refused or failed an operation (after its own retries)."""


@dataclass(frozen=True, slots=True)
class DestinationOptions:
    """Options a destination may use (each exporter ignores those that do not apply to it)."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    storage_class: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    checksum_mode: str | None = None
    multipart_threshold: int = 8 * 1024 * 1024  # objects from this size stream (S3: multipart)
    multipart_chunksize: int | None = None  # part size; None: chosen from each object's size
    max_concurrency: int = 10


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Everything known about an object before it is stored (hash and size included)."""

    item_id: str | None
    sha256: str
    size: int
    format: str
    content_type: str


@dataclass(slots=True)
class ItemUpload:
    """One item as the runner hands it to ``put_item``: its audio as a stream of chunks, its sidecar."""

    item_id: str
    audio_key: str
    sidecar_key: str
    audio: Iterable[bytes] | IO[bytes]  # chunks, or a local file opened "rb" (read in 1 MiB pieces)
    sidecar: bytes
    content_type: str
    format: str
    cancel: threading.Event = field(default_factory=threading.Event)
    size_hint: int | None = None  # the audio's announced length (Content-Length, file size), when known


class Exporter(ABC):
    """Base class of every destination. Subclasses set ``scheme`` and implement the primitives.

    Parameters:
        url: the destination as the user gave it (``scheme://...`` or a plain path).
        options: DestinationOptions (S3 settings and transfer tuning).
    """

    #: URL scheme this exporter serves ("s3", "file", "memory", ...); checked at load time.
    scheme: ClassVar[str] = ""

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        self.url = url
        self.options = options or DestinationOptions()
        self._lock = threading.Lock()  # guards _manifest and _dirty
        self._flush_lock = threading.Lock()  # one manifest write at a time (taken before _lock)
        self._manifest: dict[str, Entry] | None = None
        self._dirty = False
        self._closed = False

    # -- primitives a plugin implements ----------------------------------------------
    @abstractmethod
    def _scan(self) -> Mapping[str, int]:
        """One listing of every object under the destination: relative key -> size in bytes."""

    @abstractmethod
    def _read(self, key: str) -> bytes | None:
        """The content of a small object (the manifest), None if absent."""

    @abstractmethod
    def _write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        """Store ``body`` (seekable, at 0, ``info.size`` bytes) under ``key``, atomically: never partly visible."""

    @abstractmethod
    def _remove(self, keys: Sequence[str]) -> None:
        """Remove these objects; a key already gone is not an error."""

    def _check(self) -> None:
        """Raise ConfigError if the destination cannot be used (read-only probe)."""

    def _prepare(self) -> None:
        """Clean up debris of interrupted runs (temporary files, unfinished uploads)."""

    def _abort(self) -> None:
        """Cancel transfers in flight."""

    def _release(self) -> None:
        """Release connections and handles."""

    def _stream_threshold(self) -> int | None:
        """Audio reaching this many bytes goes to ``_write_stream``; smaller audio to ``_write`` (None: never streams)."""
        return None

    def _write_stream(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        """Store ``chunks`` under ``key`` as they arrive, atomically (nothing visible unless all arrived).

        ``info.sha256`` is "" and ``info.size`` the announced length (0 if unknown); an exception
        from ``chunks`` (a cut download, a cancel) must leave nothing behind. Optional: only called
        when ``_stream_threshold`` returns a size."""
        raise NotImplementedError

    # -- the interface the runner uses -----------------------------------------------
    def check(self) -> None:
        """Fail early (one clear ConfigError) if the destination is unusable; changes nothing."""
        self._check()

    def prepare(self) -> None:
        """Called once before the first change of a run (never in a dry run)."""
        self._prepare()

    def listing(self) -> dict[str, Entry]:
        """What this exporter holds: manifest entries whose object still exists with the recorded size."""
        sizes = self._scan()
        with self._lock:
            manifest = self._load_manifest_locked()
            return {k: e for k, e in manifest.items() if sizes.get(k) == e.size}

    def put_item(self, upload: ItemUpload) -> list[Entry]:
        """Store one item's audio (hashed on its way) then its sidecar; record both in the manifest."""
        audio = self._put_audio(upload)
        sidecar = self._put_bytes(upload.sidecar_key, upload.sidecar, hashlib.sha256(upload.sidecar).hexdigest(), upload, "application/json", "json")
        return [audio, sidecar]

    def delete(self, keys: Sequence[str]) -> None:
        """Remove objects this exporter wrote (keys not in its manifest are refused)."""
        with self._lock:
            manifest = self._load_manifest_locked()
            unknown = [k for k in keys if k not in manifest]
        if unknown:
            raise DestinationError(f"refusing to delete {unknown[0]!r}: not written by historyfs")
        self._remove(list(keys))
        with self._lock:
            for k in keys:
                manifest.pop(k, None)
            self._dirty = True

    def abort(self) -> None:
        """Stop transfers in flight (the run is being interrupted); completed ones stay recorded."""
        self._abort()

    def flush(self) -> None:
        """Write the manifest now if it changed (atomically, as any object; serialized outside the lock)."""
        with self._flush_lock:
            with self._lock:
                if not self._dirty or self._manifest is None:
                    return
                entries, self._dirty = dict(self._manifest), False
            data = _dump_manifest(entries)
            try:
                self._write(MANIFEST_KEY, io.BytesIO(data), ObjectInfo(None, hashlib.sha256(data).hexdigest(), len(data), "json", "application/json"))
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
            self._release()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------
    def _put_audio(self, upload: ItemUpload) -> Entry:
        """A local file: hashed, then handed over whole. A download: in memory up to the store's
        threshold and then one ``_write``, else streamed as it arrives; spooled if the store cannot stream."""
        if isinstance(upload.audio, io.IOBase):
            return self._put_spooled(upload, hash_file(upload.audio, upload.cancel))
        threshold = self._stream_threshold()
        hashed = HashingChunks(upload.audio, upload.cancel)
        if threshold is None:
            return self._put_spooled(upload, spool(hashed))
        head, rest = take(iter(hashed), threshold)
        if rest is None:
            return self._put_bytes(upload.audio_key, b"".join(head), hashed.sha256, upload, upload.content_type)
        info = ObjectInfo(upload.item_id, "", upload.size_hint or 0, upload.format, upload.content_type)
        self._write_stream(upload.audio_key, chain(head, rest), info)
        if not hashed.finished:
            raise DestinationError(f"{upload.audio_key}: the store stopped reading the audio before its end")
        return self._record(upload.audio_key, Entry(upload.item_id, hashed.sha256, hashed.size, upload.format))

    def _put_spooled(self, upload: ItemUpload, body: Spooled) -> Entry:
        try:
            info = self._info(upload, body.sha256, body.size, upload.content_type)
            self._write(upload.audio_key, body.file, info)
        finally:
            body.file.close()
        return self._record(upload.audio_key, Entry(upload.item_id, body.sha256, body.size, upload.format))

    def _put_bytes(self, key: str, data: bytes, sha256: str, upload: ItemUpload, content_type: str, fmt: str | None = None) -> Entry:
        info = self._info(upload, sha256, len(data), content_type, fmt)
        self._write(key, io.BytesIO(data), info)  # BytesIO over bytes: read() hands back the same object, no copy
        return self._record(key, Entry(upload.item_id, sha256, len(data), info.format))

    @staticmethod
    def _info(upload: ItemUpload, sha256: str, size: int, content_type: str, fmt: str | None = None) -> ObjectInfo:
        if upload.cancel.is_set():
            raise Cancelled("transfer cancelled")
        return ObjectInfo(upload.item_id, sha256, size, fmt or upload.format, content_type)

    def _record(self, key: str, entry: Entry) -> Entry:
        with self._lock:
            self._load_manifest_locked()[key] = entry
            self._dirty = True
        return entry

    def _load_manifest_locked(self) -> dict[str, Entry]:
        if self._manifest is None:
            self._manifest = _parse_manifest(self._read(MANIFEST_KEY))
        return self._manifest
