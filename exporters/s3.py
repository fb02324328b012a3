"""S3Destination: mirror into ``s3://bucket/prefix`` on AWS or any S3-compatible store, through boto3.

Every request goes through one botocore client (``s3_client``: how it is tuned), shared by all
transfer threads. Each object carries user metadata x-amz-meta-historyfs-item-id, -format and,
when known before the upload starts, -sha256 (of its bytes). An object below the multipart
threshold is one PutObject of bytes already in memory, and so is a local file (a mount's cache)
up to SINGLE_PUT_MAX; a larger download (or audio of unknown length that grows past the
threshold) streams as a multipart upload whose parts go out in parallel while the body is still
arriving (``s3_multipart``), its part size chosen from the announced size. A PUT or a completed
multipart upload is atomic, so no partial object is ever visible; a stream that breaks or is
cancelled (``abort``) aborts its upload, and ``prepare`` aborts the unfinished uploads a killed
run left in the exporter's namespace (by-voice/, by-date/, the manifest), when its marker object
says there may be some. A run reads the manifest (``check``: a bad bucket, credentials or
endpoint fail there) and lists the prefix once; it sends a HEAD only for an object present but
missing from the manifest (a run killed before it saved it): its metadata says what it is
(``describe``; an object streamed in parts has no sha256 there, so it is read back and hashed).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from historyfs.errors import ConfigError, HistoryFSError
from historyfs.layout import VIEWS

from . import s3_client
from .base import Cancelled, Chunks, Destination, DestinationError, DestinationOptions, ObjectInfo, Stored
from .bodies import HashingChunks, file_chunks
from .manifest import MANIFEST_KEY
from .s3_client import BODY_ERRORS, ERRORS
from .s3_multipart import PartPool, Upload, cut

log = logging.getLogger(__name__)

#: Top-level folders of the exporter's keys (every view an export can take, and the manifest): uploads
#: left unfinished there are ours to abort.
OWNED_ROOTS = (*(f"{view}/" for view in VIEWS), ".historyfs-")
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
DESCRIBE_JOBS = 8  # HEADs at once when objects a killed run left unrecorded are described
_DELETE_BATCH = 1000  # the DeleteObjects maximum
#: Written before a run's first multipart upload, removed when every one of them ended well. A run
#: that finds it (one was killed or failed mid-upload) lists and aborts the unfinished uploads; a
#: run that does not never spends a request on them.
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


class S3Destination(Destination):
    """A prefix of an S3 bucket."""

    scheme = "s3"

    def __init__(self, url: str, options: DestinationOptions) -> None:
        self.options = options
        self.stream_threshold = options.multipart_threshold
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = s3_client.endpoint_url(self.options)
        self._open_lock = threading.Lock()  # guards _client and _parts
        self._client: Any = None
        self._parts: PartPool | None = None
        self._manifest_bytes: Any = _UNREAD  # what check() read, handed to the first read of the manifest
        self._aborted = threading.Event()  # abort() was called: item uploads stop
        self._streams = threading.BoundedSemaphore(MULTIPART_OBJECTS)
        self._unfinished = _Unfinished(self)

    # -- the client ----------------------------------------------------------------------
    def client(self) -> Any:
        """The botocore client every request of this destination goes through (made on first use)."""
        with self._open_lock:
            if self._client is None:
                self._client = s3_client.make_client(self.options, self.options.max_concurrency + MULTIPART_OBJECTS * PARTS_PER_OBJECT)
            return self._client

    def _part_pool(self) -> PartPool:
        client = self.client()
        with self._open_lock:
            if self._parts is None:
                self._parts = PartPool(client, MULTIPART_OBJECTS * PARTS_PER_OBJECT)
            return self._parts

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _fail(self, exc: BaseException, what: str) -> HistoryFSError:
        return s3_client.s3_error(exc, what, self.bucket, self.endpoint_url)

    # -- primitives ------------------------------------------------------------------
    def check(self) -> None:
        """Read the manifest: the first request a run needs anyway, and one that fails on a bad bucket."""
        self._manifest_bytes = self._read_retrying(MANIFEST_KEY)

    def scan(self) -> list[Stored]:
        prefix = self._key("")
        try:
            sizes = {k[len(prefix) :]: n for k, n in s3_client.list_sizes(self.client(), self.bucket, prefix).items()}
        except ERRORS as exc:
            raise self._fail(exc, "listing") from None
        self._unfinished.found(sizes)
        return [Stored(k, n) for k, n in sizes.items()]

    def describe(self, keys: Sequence[str]) -> list[Stored]:
        """What each object's metadata says it is (HEAD, a few at a time); an object without it is left out."""
        with ThreadPoolExecutor(max_workers=DESCRIBE_JOBS, thread_name_prefix="s3-head") as pool:
            return [s for s in pool.map(self._describe_one, keys) if s is not None]

    def _describe_one(self, key: str) -> Stored | None:
        try:
            head = self.client().head_object(Bucket=self.bucket, Key=self._key(key))
        except ERRORS as exc:
            if s3_client.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(exc, f"HEAD of {key}") from None
        meta, size = head.get("Metadata", {}), int(head["ContentLength"])
        item_id, sha256 = meta.get(META_ITEM_ID), meta.get(META_SHA256) or None
        if item_id and sha256 is None:
            sha256 = self._hash_of(key)  # streamed in parts: its sha256 was not known when it started
        return Stored(key, size, item_id, sha256, meta.get(META_FORMAT))

    def _hash_of(self, key: str) -> str | None:
        try:
            body = self.client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with body:
                hashed = HashingChunks(body.iter_chunks(1024 * 1024))
                for _ in hashed:
                    pass
            return hashed.sha256
        except (*ERRORS, *BODY_ERRORS):
            return None

    def read(self, key: str) -> bytes | None:
        if key == MANIFEST_KEY and self._manifest_bytes is not _UNREAD:
            data, self._manifest_bytes = self._manifest_bytes, _UNREAD
            return data  # type: ignore[no-any-return]
        return self._read_retrying(key)

    def _read_retrying(self, key: str) -> bytes | None:
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return self._read_once(key)
            except BODY_ERRORS as exc:  # botocore retries the request, not the reading of a body cut short
                if attempt == READ_ATTEMPTS:
                    raise self._fail(exc, f"read of {key}") from None
                log.info("reading %s again after: %s", key, exc.__class__.__name__)
        raise AssertionError("unreachable")

    def _read_once(self, key: str) -> bytes | None:
        try:
            body = self.client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with body:
                return bytes(body.read())
        except BODY_ERRORS:
            raise
        except ERRORS as exc:
            if s3_client.error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, f"read of {key}") from None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        """Bytes in memory, a local file (a mount's cache) or the manifest: one PUT up to
        SINGLE_PUT_MAX, else (or with --multipart-chunk-size) parts read from the body as they go."""
        if info.size < self.options.multipart_threshold:
            self._put(key, body.read(), info)
            return
        with self._streams:
            if info.size <= SINGLE_PUT_MAX and not self.options.multipart_chunksize:
                self._put(key, body.read(), info)
            else:
                self._multipart(key, file_chunks(body, part_size(info.size, self.options.multipart_chunksize)), info)

    def write_stream(self, key: str, chunks: Chunks, info: ObjectInfo) -> None:
        """A download past the threshold: parts go out while it arrives (the upload overlaps it)."""
        with self._streams:
            self._multipart(key, chunks, info)

    def _put(self, key: str, data: bytes, info: ObjectInfo) -> None:
        """One PutObject of ``data`` (with --checksum-mode when_supported, the SHA-256 the store verifies)."""
        self._refuse_if_aborted(key, info)
        extra = self._extra_args(info)
        if self._checksums() and info.sha256:
            extra.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(bytes.fromhex(info.sha256)).decode())  # botocore computes nothing
        try:
            self.client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ERRORS as exc:
            raise self._fail(exc, f"upload of {key}") from None

    def _multipart(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        self._refuse_if_aborted(key, info)
        item = info.item_id is not None  # not the manifest, which is still written after abort()
        parts = cut(self._until_aborted(chunks) if item else iter(chunks), part_size(info.size, self.options.multipart_chunksize))
        cancel = self._aborted if item else threading.Event()
        upload = Upload(self._part_pool(), self.bucket, self._key(key), self._extra_args(info), cancel, PARTS_PER_OBJECT,
                        checksums=self._checksums(), before_create=self._unfinished.begin)
        try:
            upload.run(parts)
        except BaseException as exc:
            self._unfinished.failed = upload.upload_id != "" or self._unfinished.failed  # its abort may have failed: the next run checks
            if isinstance(exc, Cancelled):
                raise Cancelled(f"upload of {key} cancelled") from None
            if isinstance(exc, ERRORS):
                raise self._fail(exc, f"upload of {key}") from None
            raise

    def _refuse_if_aborted(self, key: str, info: ObjectInfo) -> None:
        if info.item_id is not None and self._aborted.is_set():  # the manifest is still written
            raise Cancelled(f"upload of {key} cancelled")

    def _until_aborted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self._aborted.is_set():
                raise Cancelled("upload cancelled")
            yield chunk

    def _checksums(self) -> bool:
        return (self.options.checksum_mode or "when_supported") == "when_supported"

    def _extra_args(self, info: ObjectInfo) -> dict[str, Any]:
        o = self.options
        args: dict[str, Any] = {"ContentType": info.content_type}
        if info.item_id is not None:
            meta = {META_ITEM_ID: info.item_id, META_SHA256: info.sha256, META_FORMAT: info.format}
            args["Metadata"] = {k: v for k, v in meta.items() if v}  # sha256 is "" when streamed
            if o.storage_class:
                args["StorageClass"] = o.storage_class
        if o.sse:
            args["ServerSideEncryption"] = o.sse
        if o.sse_kms_key_id:
            args["SSEKMSKeyId"] = o.sse_kms_key_id
        return args

    def remove(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": self._key(k)} for k in keys[i : i + _DELETE_BATCH]]
            try:
                answer = self.client().delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except ERRORS as exc:
                raise self._fail(exc, "delete") from None
            errors = answer.get("Errors") or []
            if errors:
                raise DestinationError(f"S3 delete of {errors[0].get('Key')} failed: {errors[0].get('Code')}")

    def prepare(self) -> None:
        """Abort the multipart uploads a killed run left, if its marker says there may be some."""
        self._unfinished.clean_up()

    def stale_uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of unfinished multipart uploads under the prefix in the exporter's namespace."""
        prefix = self._key("")
        owned = lambda key: key[len(prefix) :].startswith(OWNED_ROOTS)  # noqa: E731
        try:
            return list(s3_client.stale_uploads(self.client(), self.bucket, prefix, owned))
        except ERRORS as exc:
            raise self._fail(exc, "listing of unfinished uploads") from None

    def abort(self) -> None:
        """Stop every item upload at its next chunk or part; its multipart upload is aborted."""
        self._aborted.set()

    def close(self) -> None:
        self._unfinished.finish()
        with self._open_lock:
            client, parts, self._client, self._parts = self._client, self._parts, None, None
        if parts is not None:
            parts.close()
        if client is not None:
            client.close()


class _Unfinished:
    """Multipart uploads across runs: the marker object, and cleaning up after a run killed mid-upload.

    The cleanup runs on a thread of its own while small items go up; a multipart upload of this
    run waits for it, so that it is never mistaken for a stale one. A failed cleanup is a warning
    (such uploads only cost storage) and keeps the marker."""

    def __init__(self, exporter: S3Destination) -> None:
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
                self._call("put_object", Body=b"")
                self.written = True

    def wait(self) -> None:
        if self._cleaning is not None:
            self._cleaning.join()

    def finish(self) -> None:
        """At the end of a run: the marker goes when every multipart upload ended well."""
        self.wait()
        if (self.cleaned or (self.written and not self.seen)) and not self.failed:
            try:
                self._call("delete_object")
            except HistoryFSError as exc:
                log.warning("could not remove s3://%s/%s (%s): the next run will clean up again", self.exp.bucket, self.exp._key(MARKER_KEY), exc)

    def _abort_stale(self) -> None:
        try:
            for key, upload_id in self.exp.stale_uploads():
                try:
                    s3_client.abort_upload(self.exp.client(), self.exp.bucket, key, upload_id)
                except ERRORS as exc:
                    raise self.exp._fail(exc, "abort of a stale upload") from None
            self.cleaned = True
        except HistoryFSError as exc:
            log.warning("unfinished multipart uploads under s3://%s/%s were not cleaned up: %s", self.exp.bucket, self.exp.prefix, exc)

    def _call(self, method: str, **kwargs: Any) -> None:
        try:
            getattr(self.exp.client(), method)(Bucket=self.exp.bucket, Key=self.exp._key(MARKER_KEY), **kwargs)
        except ERRORS as exc:
            raise self.exp._fail(exc, f"{method} of {MARKER_KEY}") from None
