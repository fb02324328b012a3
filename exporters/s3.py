"""S3Exporter: mirror into ``s3://bucket/prefix`` on AWS or any S3-compatible store.

Requests go through obstore (``s3_store``); boto3 only does what obstore cannot (``s3_boto``).
Each object carries user metadata x-amz-meta-historyfs-item-id, -format and, when known before
the upload starts, -sha256 (of its bytes). An object below the multipart threshold is one PUT
of bytes already in memory, and so is a local file (a mount's cache) up to SINGLE_PUT_MAX; a
larger download (or audio of unknown length that grows past the threshold) streams as a multipart
upload whose parts go out in parallel while the body is still arriving, its part size chosen from
the announced size. A PUT or a completed multipart upload is
atomic, so no partial object is ever visible; a stream that breaks or is cancelled (``abort``)
aborts its upload, and ``prepare`` aborts the unfinished uploads a killed run left in the
exporter's namespace (by-voice/, by-date/, the manifest).
A run reads the manifest (``check``: a bad bucket, credentials or endpoint fail there) and lists
the prefix once; it never sends a HEAD per object.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from historyfs.errors import ConfigError, HistoryFSError

from . import s3_store
from .base import MANIFEST_KEY, Cancelled, DestinationOptions, Exporter, ObjectInfo
from .bodies import file_chunks

log = logging.getLogger(__name__)

#: Top-level folders of the exporter's keys: uploads left unfinished there are ours to abort.
OWNED_ROOTS = ("by-voice/", "by-date/", ".historyfs-")
META_ITEM_ID, META_SHA256, META_FORMAT = "historyfs-item-id", "historyfs-sha256", "historyfs-format"
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
MIB = 1024 * 1024
#: Part size when the size is unknown or small; S3's minimum is 5 MiB.
MIN_PART = 8 * MIB
#: A large object is cut into about this many parts, uploaded at once: 48 MiB goes as 4 x 12 MiB.
PARTS_PER_OBJECT = 4
#: Parts are at most this large, and at most this many large objects are in flight at once, which
#: bounds their memory to MULTIPART_OBJECTS x max(SINGLE_PUT_MAX, (PARTS_PER_OBJECT + 1) x MAX_PART).
MAX_PART, MULTIPART_OBJECTS = 16 * MIB, 4
#: A local file (a mount's cache) up to this size is sent as ONE PUT, as s5cmd does below its 50 MiB
#: part size: a multipart upload costs the store the assembly of its parts (rclone serve s3
#: re-reads them all), and with several objects in flight one stream each is as fast as parallel
#: parts. A download is not held whole for that: its parts go out while it arrives.
SINGLE_PUT_MAX = 64 * MIB
READ_ATTEMPTS = 4  # reads of the manifest whose body is cut short
#: Written before a run's first multipart upload, removed when every one of them ended well. A run
#: that finds it (one was killed or failed mid-upload) aborts the unfinished uploads through boto3;
#: a run that does not never loads boto3 for that.
MARKER_KEY = ".historyfs-multipart"
_UNREAD = object()


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ("bucket", "some/prefix"); ConfigError if malformed."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"bad S3 destination {url!r}: expected s3://bucket[/prefix]")
    if not _BUCKET_RE.match(parts.netloc):
        raise ConfigError(f"bad S3 bucket name {parts.netloc!r}")
    prefix = unquote(parts.path).strip("/")
    if any(p in (".", "..") for p in prefix.split("/")) or "//" in prefix:
        raise ConfigError(f"bad S3 prefix {prefix!r}")
    return parts.netloc, prefix


def part_size(size: int, configured: int | None) -> int:
    """Bytes per part: ``--multipart-chunk-size`` if given, else from the announced ``size`` (0: unknown)."""
    if configured:
        return configured
    want = -(-size // PARTS_PER_OBJECT)
    return min(MAX_PART, max(MIN_PART, -(-want // MIB) * MIB))


class S3Exporter(Exporter):
    """A prefix of an S3 bucket."""

    scheme = "s3"

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        super().__init__(url, options)
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = s3_store.endpoint_url(self.options)
        self._open_lock = threading.Lock()  # guards _store, _boto
        self._store: Any = None
        self._boto: tuple[Any, Any] | None = None  # (boto3 session, botocore client), made on first need
        self._manifest_bytes: Any = _UNREAD  # what check() read, handed to the first _read of the manifest
        self._aborted = threading.Event()  # abort() was called: item uploads stop
        self._streams = threading.BoundedSemaphore(MULTIPART_OBJECTS)
        self._unfinished = _Unfinished(self)

    # -- connections -------------------------------------------------------------------
    def store(self) -> Any:
        """The obstore S3Store (credentials and region resolved on first use)."""
        with self._open_lock:
            if self._store is None:
                creds = s3_store.env_credentials(self.options)
                provider = None if creds else _boto().credential_provider(self._session_locked())
                self._store = s3_store.open_store(self.bucket, self.prefix, self.options, self._region_locked(), creds, provider)
            return self._store

    def _region_locked(self) -> str:
        region = self.options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            return region
        region = self._session_locked().region_name
        if region or self.endpoint_url:
            return str(region or "us-east-1")
        return str(_boto().bucket_region(self._boto_client_locked("us-east-1"), self.bucket))

    def _session_locked(self) -> Any:
        if self._boto is None:
            self._boto = (_boto().session(self.options.profile), None)
        return self._boto[0]

    def _boto_client_locked(self, region: str | None = None) -> Any:
        session = self._session_locked()
        if self._boto is None or self._boto[1] is None:
            self._boto = (session, _boto().client(session, self.endpoint_url, region or self._region_locked()))
        return self._boto[1]

    def _control(self) -> Any:
        """The botocore client, for what obstore cannot do."""
        self.store()
        with self._open_lock:
            return self._boto_client_locked()

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _fail(self, exc: BaseException, what: str) -> HistoryFSError:
        return s3_store.s3_error(exc, what, self.bucket, self.endpoint_url)

    # -- primitives ------------------------------------------------------------------
    def _check(self) -> None:
        """Read the manifest: the first request a run needs anyway, and one that fails on a bad bucket."""
        self._manifest_bytes = self._read_retrying(MANIFEST_KEY)

    def _scan(self) -> Mapping[str, int]:
        import obstore
        from obstore.exceptions import BaseError, InvalidPathError

        try:
            sizes = {m["path"]: m["size"] for batch in obstore.list(self.store(), chunk_size=1000) for m in batch}
        except InvalidPathError:
            log.info("a key under s3://%s/%s has '.', '..' or empty segments: listing through boto3", self.bucket, self.prefix)
            prefix = self._key("")
            sizes = {k[len(prefix) :]: n for k, n in _boto().list_sizes(self._control(), self.bucket, prefix).items()}
        except BaseError as exc:
            raise self._fail(exc, "listing") from None
        self._unfinished.found(sizes)
        return sizes

    def _read(self, key: str) -> bytes | None:
        if key == MANIFEST_KEY and self._manifest_bytes is not _UNREAD:
            data, self._manifest_bytes = self._manifest_bytes, _UNREAD
            return data  # type: ignore[no-any-return]
        return self._read_retrying(key)

    def _read_retrying(self, key: str) -> bytes | None:
        import obstore
        from obstore.exceptions import BaseError

        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return bytes(obstore.get(self.store(), key).bytes())
            except FileNotFoundError:
                return None
            except BaseError as exc:  # obstore retries requests, not a body cut short once it started
                error = self._fail(exc, f"read of {key}")
                if isinstance(error, ConfigError) or attempt == READ_ATTEMPTS:
                    raise error from None
                log.info("reading %s again after: %s", key, error)
        raise AssertionError("unreachable")

    def _write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        """Bytes in memory, a local file (a mount's cache) or the manifest: one PUT up to
        SINGLE_PUT_MAX, else (or with --multipart-chunk-size) parts read from the body as they go."""
        if info.size < self.options.multipart_threshold:
            self._put(key, body.read(), info, multipart=False)
            return
        with self._streams:
            if info.size <= SINGLE_PUT_MAX and not self.options.multipart_chunksize:
                self._put(key, body.read(), info, multipart=False)
            else:
                self._put(key, self._until_aborted(file_chunks(body)), info, multipart=True)

    def _stream_threshold(self) -> int | None:
        return self.options.multipart_threshold

    def _write_stream(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        """A download past the threshold: parts go out while it arrives (the upload overlaps it)."""
        with self._streams:
            self._put(key, self._until_aborted(chunks), info, multipart=True)

    def _until_aborted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self._aborted.is_set():
                raise Cancelled("upload cancelled")
            yield chunk

    def _put(self, key: str, body: bytes | Iterator[bytes], info: ObjectInfo, *, multipart: bool) -> None:
        import obstore
        from obstore.exceptions import BaseError

        if info.item_id is not None and self._aborted.is_set():  # the manifest is still written
            raise Cancelled(f"upload of {key} cancelled")
        size = part_size(info.size, self.options.multipart_chunksize)
        if multipart:
            self._unfinished.begin()
        try:
            obstore.put(self.store(), key, body, attributes=self._attributes(info), use_multipart=multipart, chunk_size=size, max_concurrency=PARTS_PER_OBJECT)
        except BaseException as exc:
            if multipart:
                self._unfinished.failed = True  # obstore aborts it, but that may have failed too: the next run checks
            if isinstance(exc, Cancelled):
                raise Cancelled(f"upload of {key} cancelled") from None
            if isinstance(exc, BaseError):
                raise self._fail(exc, f"upload of {key}") from None
            raise

    def _attributes(self, info: ObjectInfo) -> dict[str, str]:
        attrs = {"Content-Type": info.content_type}
        if info.item_id is not None:
            meta = {META_ITEM_ID: info.item_id, META_SHA256: info.sha256, META_FORMAT: info.format}
            attrs.update((k, v) for k, v in meta.items() if v)  # sha256 is "" when streamed
            if self.options.storage_class:
                attrs["Storage-Class"] = self.options.storage_class
        return attrs

    def _remove(self, keys: Sequence[str]) -> None:
        import obstore
        from obstore.exceptions import BaseError

        try:
            obstore.delete(self.store(), list(keys))
        except BaseError as exc:
            raise self._fail(exc, "delete") from None

    def _prepare(self) -> None:
        """Abort the multipart uploads a killed run left, if its marker says there may be some."""
        self._unfinished.clean_up()

    def stale_uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of unfinished multipart uploads under the prefix in the exporter's namespace."""
        prefix = self._key("")
        owned = lambda key: key[len(prefix) :].startswith(OWNED_ROOTS)  # noqa: E731
        return list(_boto().stale_uploads(self._control(), self.bucket, prefix, owned))

    def _abort(self) -> None:
        """Stop every item upload at its next chunk; its multipart upload is aborted."""
        self._aborted.set()

    def _release(self) -> None:
        self._unfinished.finish()
        with self._open_lock:
            boto, self._boto, self._store = self._boto, None, None
        if boto is not None and boto[1] is not None:
            boto[1].close()


class _Unfinished:
    """Multipart uploads across runs: the marker object, and cleaning up after a run killed mid-upload.

    The cleanup runs on a thread of its own (boto3 takes ~0.3 s to load) while small items go up;
    a multipart upload of this run waits for it, so that it is never mistaken for a stale one.
    A failed cleanup is a warning (such uploads only cost storage) and keeps the marker."""

    def __init__(self, exporter: S3Exporter) -> None:
        self.exp = exporter
        self.seen = self.written = self.failed = False  # failed: one of ours may be left open
        self.cleaned = False  # a cleanup ran to the end
        self._lock = threading.Lock()  # guards written
        self._cleaning: threading.Thread | None = None

    def found(self, sizes: dict[str, int]) -> None:
        self.seen = sizes.pop(MARKER_KEY, None) is not None

    def clean_up(self) -> None:
        if self.seen and self._cleaning is None:
            self._cleaning = threading.Thread(target=self._abort_stale, name="s3-cleanup", daemon=True)
            self._cleaning.start()

    def begin(self) -> None:
        """Before a multipart upload: the cleanup is over, and the marker is there."""
        self.wait()
        with self._lock:
            if not self.written:
                self._obstore_call("put", MARKER_KEY, b"")
                self.written = True

    def wait(self) -> None:
        if self._cleaning is not None:
            self._cleaning.join()

    def finish(self) -> None:
        """At the end of a run: the marker goes when every multipart upload ended well."""
        self.wait()
        if (self.cleaned or (self.written and not self.seen)) and not self.failed:
            try:
                self._obstore_call("delete", MARKER_KEY)
            except HistoryFSError as exc:
                log.warning("could not remove s3://%s/%s/%s (%s): the next run will clean up again", self.exp.bucket, self.exp.prefix, MARKER_KEY, exc)

    def _abort_stale(self) -> None:
        try:
            client, boto = self.exp._control(), _boto()
            for key, upload_id in self.exp.stale_uploads():
                boto.abort_upload(client, self.exp.bucket, key, upload_id)
            self.cleaned = True
        except HistoryFSError as exc:
            log.warning("unfinished multipart uploads under s3://%s/%s were not cleaned up: %s", self.exp.bucket, self.exp.prefix, exc)

    def _obstore_call(self, name: str, *args: Any) -> None:
        import obstore
        from obstore.exceptions import BaseError

        try:
            getattr(obstore, name)(self.exp.store(), *args)
        except BaseError as exc:
            raise self.exp._fail(exc, f"{name} of {MARKER_KEY}") from None


def _boto() -> Any:
    """The boto3 helpers, imported on first need."""
    from . import s3_boto as module

    return module
