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

A plugin implements five small primitives over its storage (``_scan``, ``_read``, ``_write``,
``_remove``, optionally ``_release``/``_check``/``_prepare``/``_abort``); this base class owns the
manifest (``.historyfs-manifest.json`` under the destination: key -> item_id, sha256, size,
format), the spooling of the audio stream (so the hash and size are known before the store sees
the body: metadata such as S3's x-amz-meta-historyfs-sha256 can then be set on the object
itself), and thread safety (``put_item`` is called from many threads at once).

Large audio need not be spooled whole first: a store that can take a body as it arrives sets
``_stream_threshold`` and implements ``_write_stream``; audio announced (``size_hint``) at or
above the threshold is then handed over chunk by chunk while the base class hashes it on the
way, so the upload overlaps the download. Its sha256 is recorded in the manifest; it is not
known when the store starts the object, so ``ObjectInfo.sha256`` is "" for such a write.

Keys are relative, '/'-separated paths under the destination, e.g.
``by-voice/Rachel/2026-11/2026-11-23/14-03-27 Hello [ja9xsmfG].mp3``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any, ClassVar

from historyfs.errors import ConfigError, HistoryFSError

#: Name of the manifest object under the destination (hidden from listings and from --delete).
MANIFEST_KEY = ".historyfs-manifest.json"
MANIFEST_VERSION = 1

#: Audio up to this size is spooled in memory, larger audio in a temporary file. A clip is
#: typically 20 KiB-2 MiB; with the default 8 jobs this bounds memory to about 8 x 4 MiB.
SPOOL_MEMORY_LIMIT = 4 * 1024 * 1024
_COPY_CHUNK = 256 * 1024


class PluginError(ConfigError):
    """An exporter plugin cannot be registered or loaded; the message names the plugin."""


class DestinationError(HistoryFSError):
    """The destination refused or failed an operation (after its own retries)."""


class Cancelled(HistoryFSError):
    """A transfer was stopped because the run is being interrupted."""


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
    multipart_threshold: int = 8 * 1024 * 1024
    multipart_chunksize: int = 8 * 1024 * 1024
    max_concurrency: int = 10


@dataclass(frozen=True, slots=True)
class Entry:
    """What the exporter recorded about one object it wrote."""

    item_id: str
    sha256: str
    size: int
    format: str = ""


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
    audio: Iterable[bytes]  # chunks, or a local file opened "rb" (used in place, not copied)
    sidecar: bytes
    content_type: str
    format: str
    cancel: threading.Event = field(default_factory=threading.Event)
    size_hint: int | None = None  # the audio's announced length (Content-Length), when known


@dataclass(slots=True)
class Spooled:
    """A stream copied to a seekable file while its sha256 and length are computed."""

    file: IO[bytes]
    sha256: str
    size: int


def spool(chunks: Iterable[bytes], cancel: threading.Event | None = None) -> Spooled:
    """Copy ``chunks`` into a spooled temporary file, hashing as it goes; Cancelled if ``cancel`` is set."""
    digest, size = hashlib.sha256(), 0
    f: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_LIMIT)  # noqa: SIM115 - returned
    try:
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                raise Cancelled("transfer cancelled")
            digest.update(chunk)
            f.write(chunk)
            size += len(chunk)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return Spooled(f, digest.hexdigest(), size)


def hash_file(f: IO[bytes], cancel: threading.Event | None = None) -> Spooled:
    """A seekable local file used as is (no copy): hashed and measured, then rewound."""
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(_COPY_CHUNK):
        if cancel is not None and cancel.is_set():
            raise Cancelled("transfer cancelled")
        digest.update(chunk)
        size += len(chunk)
    f.seek(0)
    return Spooled(f, digest.hexdigest(), size)


class HashingChunks:
    """Chunks passed through while their sha256 and total length are computed; Cancelled if ``cancel`` is set."""

    def __init__(self, chunks: Iterable[bytes], cancel: threading.Event | None = None) -> None:
        self._chunks, self._cancel = chunks, cancel
        self._digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._cancel is not None and self._cancel.is_set():
                raise Cancelled("transfer cancelled")
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def spool_bytes(data: bytes) -> Spooled:
    return spool([data])


def copy_body(src: IO[bytes], dst: IO[bytes]) -> None:
    """Copy a spooled body to a file object (helper for plugins)."""
    shutil.copyfileobj(src, dst, _COPY_CHUNK)


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
        """Audio announced at this many bytes or more goes to ``_write_stream`` (None: always spooled)."""
        return None

    def _write_stream(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        """Store ``chunks`` under ``key`` as they arrive, atomically (nothing visible unless all arrived).

        ``info.sha256`` is "" and ``info.size`` only the announced length; an exception from
        ``chunks`` (a cut download, a cancel) must leave nothing behind. Optional: only called
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
        """Store one item's audio (streamed) then its sidecar; record both in the manifest."""
        audio_entry = self._put_streamed(upload) if self._streams(upload) else self._put_spooled(upload)
        sidecar = spool_bytes(upload.sidecar)
        try:
            sidecar_entry = self._put(upload.sidecar_key, sidecar, upload, "application/json", "json")
        finally:
            sidecar.file.close()
        return [audio_entry, sidecar_entry]

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
        """Write the manifest now if it changed (atomically, as any object)."""
        with self._lock:
            if not self._dirty or self._manifest is None:
                return
            data = _dump_manifest(self._manifest)
            self._dirty = False
        body = spool_bytes(data)
        try:
            self._write(MANIFEST_KEY, body.file, ObjectInfo(None, body.sha256, body.size, "json", "application/json"))
        finally:
            body.file.close()

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
    def _streams(self, upload: ItemUpload) -> bool:
        threshold = self._stream_threshold()
        local_file = isinstance(upload.audio, io.BufferedReader)
        return threshold is not None and not local_file and upload.size_hint is not None and upload.size_hint >= threshold

    def _put_spooled(self, upload: ItemUpload) -> Entry:
        source = upload.audio
        audio = hash_file(source, upload.cancel) if isinstance(source, io.BufferedReader) else spool(source, upload.cancel)
        try:
            return self._put(upload.audio_key, audio, upload, upload.content_type)
        finally:
            audio.file.close()

    def _put_streamed(self, upload: ItemUpload) -> Entry:
        """The audio handed to the store as it arrives, hashed on the way; recorded once complete."""
        chunks = HashingChunks(upload.audio, upload.cancel)
        self._write_stream(upload.audio_key, chunks, ObjectInfo(upload.item_id, "", upload.size_hint or 0, upload.format, upload.content_type))
        return self._record(upload.audio_key, Entry(upload.item_id, chunks.sha256, chunks.size, upload.format))

    def _record(self, key: str, entry: Entry) -> Entry:
        with self._lock:
            self._load_manifest_locked()[key] = entry
            self._dirty = True
        return entry

    def _put(self, key: str, body: Spooled, upload: ItemUpload, content_type: str, fmt: str | None = None) -> Entry:
        if upload.cancel.is_set():
            raise Cancelled("transfer cancelled")
        info = ObjectInfo(upload.item_id, body.sha256, body.size, fmt or upload.format, content_type)
        self._write(key, body.file, info)
        return self._record(key, Entry(upload.item_id, body.sha256, body.size, info.format))

    def _load_manifest_locked(self) -> dict[str, Entry]:
        if self._manifest is None:
            self._manifest = _parse_manifest(self._read(MANIFEST_KEY))
        return self._manifest


def _dump_manifest(entries: Mapping[str, Entry]) -> bytes:
    doc = {"version": MANIFEST_VERSION, "objects": {k: asdict(e) for k, e in sorted(entries.items())}}
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()


def _parse_manifest(data: bytes | None) -> dict[str, Entry]:
    """The manifest's entries; an absent or unreadable manifest holds nothing (so nothing is deleted)."""
    if not data:
        return {}
    try:
        doc: Any = json.loads(data)
        objects = doc["objects"] if doc.get("version") == MANIFEST_VERSION else {}
        return {str(k): _entry(v) for k, v in objects.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _entry(v: Mapping[str, Any]) -> Entry:
    return Entry(str(v["item_id"]), str(v["sha256"]), int(v["size"]), str(v.get("format", "")))
