"""The destination plugin interface: what a plugin implements (``Destination``) and the values it is handed.

A plugin is a subclass of ``Destination``: a place that stores objects under keys. It keeps its
own state in its own object; the framework (``exporters.exporter.Exporter``) wraps it and keeps
its state apart (the manifest, hashing, recovery, locks), so no attribute a plugin defines can
collide with the framework's. The framework only calls the methods below and reads the class
attributes ``scheme``, ``dest_options`` and ``stream_threshold``.

Primitives (docs/PLUGINS.md, "Writing a destination", says more):

    scan() -> Iterable[Stored]           # required: one listing of every object under the destination
    read(key) -> bytes | None            # required: a small object (the manifest), None if absent
    write(key, body, info)               # required: store a whole object, atomically
    remove(keys)                         # required: remove objects; a key already gone is no error
    write_stream(key, chunks, info)      # optional (with stream_threshold): store bytes as they arrive
    describe(keys) -> Iterable[Stored]   # optional: what the destination recorded about these objects
    check(), prepare(), abort(), close() # optional: probe, clear debris, cancel transfers, release

Threading contract: ``write`` and ``write_stream`` are called from up to ``--jobs`` threads at
once (each on a different key; the manifest's ``write`` from the run's loop alongside), and
``abort`` from any thread while they run. Every other primitive is called by one thread at a
time, never while writes are in flight: ``check``, ``scan``, ``read`` (the manifest) and
``describe`` also in a dry run and a no-op run; ``prepare`` once before a run's first change;
``remove`` after a pass's writes ended; ``close`` once, last. The framework's locks are never
visible to a plugin, and the one guarding its state is never held while a primitive runs.

Keys are relative, '/'-separated paths under the destination, e.g.
``by-voice/Rachel/2026-11/2026-11-23/14-03-27 Hello [ja9xsmfG].mp3``; the framework's own objects
start with ``.historyfs-`` (the manifest is ``.historyfs-manifest.json``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import IO, ClassVar

from historyfs.errors import ConfigError, HistoryFSError

from .bodies import Cancelled, HashingChunks

__all__ = ["Cancelled", "Chunks", "ConfigError", "Destination", "DestinationError", "DestinationOptions", "ItemUpload", "ObjectInfo",
           "PluginError", "Stored"]

_NO_OPTIONS: Mapping[str, str] = MappingProxyType({})


class PluginError(ConfigError):
    """A destination plugin cannot be registered or loaded; the message names the plugin."""


class DestinationError(HistoryFSError):
    """The destination refused or failed an operation (after its own retries)."""


@dataclass(frozen=True, slots=True)
class DestinationOptions:
    """Options for a destination: the S3 flags (other destinations ignore them), transfer tuning,
    and ``extra``, the ``--dest-opt KEY=VALUE`` pairs (checked by the destination's ``check_options``)."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    storage_class: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    checksum_mode: str | None = None
    multipart_threshold: int = 8 * 1024 * 1024  # objects from this size stream (S3: multipart)
    multipart_chunksize: int | None = None  # part size; None: chosen from each object's size
    max_concurrency: int = 10  # writes the run may have in flight at once (at least --jobs)
    extra: Mapping[str, str] = field(default_factory=lambda: _NO_OPTIONS)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What is known about an object when it is written.

    ``item_id``, ``date`` and ``metadata`` are None/empty for the framework's own objects (the
    manifest). ``sha256`` is "" and ``size`` the announced length (0: unknown) for ``write_stream``:
    they are known only once its chunks have all arrived (``Chunks.sha256``, ``Chunks.size``)."""

    item_id: str | None
    sha256: str
    size: int
    format: str  # "mp3", "wav"... for audio; "json" for a sidecar
    content_type: str
    date: datetime | None = None  # when the item was created (aware, UTC)
    metadata: Mapping[str, str] = field(default_factory=lambda: _NO_OPTIONS)  # voice, voice_id, model, text, source


@dataclass(frozen=True, slots=True)
class Stored:
    """One object as the destination holds it. ``item_id``, ``sha256`` and ``format`` are what the
    destination recorded when it wrote it (from ``ObjectInfo``), or None if it recorded nothing:
    with them, a run whose manifest was lost (``kill -9``) does not upload the object again."""

    key: str
    size: int
    item_id: str | None = None
    sha256: str | None = None
    format: str | None = None


class Chunks:
    """An object's bytes as they arrive, for ``write_stream``: iterate it once. Once the last
    chunk has been taken, ``sha256`` and ``size`` are those of all its bytes (a store that
    records them can do it before it makes the object visible)."""

    def __init__(self, chunks: Iterable[bytes], hashed: HashingChunks) -> None:
        self._chunks, self._hashed = chunks, hashed

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    @property
    def finished(self) -> bool:
        return self._hashed.finished

    @property
    def sha256(self) -> str:
        self._must_be_finished()
        return self._hashed.sha256

    @property
    def size(self) -> int:
        self._must_be_finished()
        return self._hashed.size

    def _must_be_finished(self) -> None:
        if not self._hashed.finished:
            raise RuntimeError("sha256 and size are known only after the last chunk")


@dataclass(slots=True)
class ItemUpload:
    """One item as the runner hands it to ``Exporter.put_item``: its audio as a stream of chunks, its sidecar."""

    item_id: str
    audio_key: str
    sidecar_key: str
    audio: Iterable[bytes] | IO[bytes]  # chunks, or a local file opened "rb" (read in 1 MiB pieces)
    sidecar: bytes
    content_type: str
    format: str
    cancel: threading.Event = field(default_factory=threading.Event)
    size_hint: int | None = None  # the audio's announced length (Content-Length, file size), when known
    date: datetime | None = None  # the item's creation time (aware, UTC)
    metadata: Mapping[str, str] = field(default_factory=lambda: _NO_OPTIONS)


class Destination(ABC):
    """Base class of every destination plugin; see the module docstring and docs/PLUGINS.md.

    Subclasses set ``scheme`` and implement ``scan``, ``read``, ``write`` and ``remove``. The
    constructor is the plugin's own: it gets the URL as the user gave it and the options, parses
    what it needs (raise ``ConfigError`` for a bad URL) and must not touch the storage yet
    (``check`` is the first call that may). This base class keeps no state at all.
    """

    #: The URL scheme served: ``tarball`` serves ``tarball://...``. Checked when the plugin loads.
    scheme: ClassVar[str] = ""
    #: ``--dest-opt`` keys this destination takes, each with one line of help; other keys are refused.
    dest_options: ClassVar[Mapping[str, str]] = _NO_OPTIONS
    #: Audio reaching this many bytes goes to ``write_stream`` while it arrives; None: always ``write``.
    stream_threshold: int | None = None

    def __init__(self, url: str, options: DestinationOptions) -> None:  # noqa: B027 - a constructor, not abstract
        """Keeps nothing: a subclass keeps what it needs under names of its own choosing."""

    @classmethod
    def check_options(cls, url: str, extra: Mapping[str, str]) -> None:
        """Refuse ``--dest-opt`` keys this destination does not take (one line); called before it is made."""
        unknown = sorted(set(extra) - set(cls.dest_options))
        if unknown:
            takes = ", ".join(sorted(cls.dest_options)) or "none"
            raise ConfigError(f"unknown --dest-opt {unknown[0]!r} for {cls.scheme}:// destinations (they take: {takes})")

    # -- required ------------------------------------------------------------------------
    @abstractmethod
    def scan(self) -> Iterable[Stored]:
        """One listing of every object under the destination (the manifest and debris included)."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The content of a small object (the manifest), None if absent."""

    @abstractmethod
    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        """Store ``body`` (seekable, at 0, ``info.size`` bytes of hash ``info.sha256``) under ``key``,
        replacing what is there, atomically: no reader and no ``scan`` ever sees a partial object."""

    @abstractmethod
    def remove(self, keys: Sequence[str]) -> None:
        """Remove these objects; a key already gone is not an error."""

    # -- optional ------------------------------------------------------------------------
    def write_stream(self, key: str, chunks: Chunks, info: ObjectInfo) -> None:
        """Store ``chunks`` under ``key`` as they arrive, atomically: nothing visible unless all
        arrived. An exception raised by ``chunks`` (a cut download, a cancel) must leave nothing
        behind and be raised again. Only called when ``stream_threshold`` is a number."""
        raise NotImplementedError(f"{type(self).__name__} sets stream_threshold but has no write_stream")

    def describe(self, keys: Sequence[str]) -> Iterable[Stored]:
        """What was recorded about these objects (present, but not in the manifest), for those
        ``scan`` gave no item id and sha256; nothing by default (they are uploaded again)."""
        return ()

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise ConfigError if the destination cannot be used; read-only (a dry run calls it)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Clean up debris of interrupted runs (temporary files, unfinished uploads); before the first change."""

    def abort(self) -> None:  # noqa: B027 - optional hook
        """Make writes of items in flight stop soon (raising, leaving nothing); called from another thread.
        The framework's own writes after it (the manifest, ``info.item_id`` None) must still succeed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and handles; called once, last."""
