"""S3Exporter: mirror into ``s3://bucket/prefix`` on AWS or any S3-compatible store (boto3).

Each object carries user metadata x-amz-meta-historyfs-item-id, -format and, when known before
the upload starts, -sha256 (of its bytes). Small objects are one PutObject; objects of at least
the multipart threshold go through ``s3_multipart.PartUploader`` (parts in parallel, bounded
memory). Audio streamed from the API at or above the threshold is uploaded while it downloads
(the base class hashes it on the way; its sha256 is then in the manifest, not in the metadata).
A PUT or a completed multipart upload is atomic, so no partial object is ever visible; on
Ctrl-C ``abort`` stops every upload at its next part and aborts its multipart upload, and
``prepare`` aborts stale uploads an earlier (killed) run left under the prefix in the
exporter's namespace (by-voice/, by-date/, the manifest).
A run lists the prefix ONCE (ListObjectsV2 through boto3's paginator: keys and sizes) and reads
the manifest; it never sends a HEAD per object.
Credentials come from the standard chain (env, profile, instance role), never from argv.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import boto3.session
import botocore.exceptions as bce
from botocore.config import Config

from historyfs.errors import ConfigError, HistoryFSError

from .base import MANIFEST_KEY, Cancelled, DestinationError, DestinationOptions, Exporter, ObjectInfo
from .s3_multipart import PartUploader

log = logging.getLogger(__name__)

#: Top-level folders of the exporter's keys: uploads left unfinished there are ours to abort.
OWNED_ROOTS = ("by-voice/", "by-date/", MANIFEST_KEY)
META_ITEM_ID, META_SHA256, META_FORMAT = "historyfs-item-id", "historyfs-sha256", "historyfs-format"
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_DELETE_BATCH = 1000  # the DeleteObjects maximum
_NO_UPLOAD_LISTING = ("NoSuchUpload", "NotImplemented")  # rclone serve s3 says NoSuchUpload when none
#: botocore "standard" retries (throttling and 5xx, connection resets, cut responses) with
#: exponential backoff: 8 attempts ride out about 20 s of a flaky or briefly unreachable store.
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60  # seconds; a stalled store is a failed attempt, never a hang
READ_ATTEMPTS = 4  # reads of the manifest whose body is cut short (botocore does not retry those)
_BODY_ERRORS = (bce.ResponseStreamingError, bce.IncompleteReadError, bce.ReadTimeoutError, bce.ConnectionClosedError)


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


def s3_error(exc: Exception, what: str, bucket: str, endpoint: str | None) -> HistoryFSError:
    """One-line error for a boto3/botocore failure (never contains credentials)."""
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return ConfigError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile")
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError)):
        return ConfigError(f"cannot reach the S3 endpoint {endpoint or 'of AWS'}")
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "")) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in ("404", "NoSuchBucket"):
            return ConfigError(f"S3 bucket {bucket!r} does not exist")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
            return ConfigError(f"access denied to S3 bucket {bucket!r} ({code})")
        return DestinationError(f"S3 {what} failed: {code}: {err.get('Message', '')}".rstrip(": "))
    if isinstance(exc, bce.BotoCoreError):
        return DestinationError(f"S3 {what} failed: {exc}")
    return DestinationError(f"S3 {what} failed: {exc.__class__.__name__}: {exc}")


class S3Exporter(Exporter):
    """A prefix of an S3 bucket."""

    scheme = "s3"

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        super().__init__(url, options)
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = self.options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.client = self._make_client()
        self._uploader: PartUploader | None = None
        self._uploader_lock = threading.Lock()  # guards _uploader
        self._aborted = threading.Event()  # abort() was called: item uploads are refused

    # -- setup -----------------------------------------------------------------------
    def _make_client(self) -> Any:
        o = self.options
        try:
            session = boto3.session.Session(profile_name=o.profile)
            return session.client("s3", region_name=o.region, endpoint_url=self.endpoint_url, config=self._config())
        except bce.ProfileNotFound:
            raise ConfigError(f"AWS profile {o.profile!r} not found") from None
        except ValueError as exc:
            raise ConfigError(f"bad S3 endpoint URL {self.endpoint_url!r}: {exc}") from None

    def _config(self) -> Config:
        o = self.options
        checksum = {"request_checksum_calculation": o.checksum_mode, "response_checksum_validation": o.checksum_mode} if o.checksum_mode else {}
        return Config(
            max_pool_connections=max(16, o.max_concurrency * 2),
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            **checksum,
        )

    def _parts(self) -> PartUploader:
        with self._uploader_lock:
            if self._uploader is None:
                o = self.options
                checksums = getattr(self.client.meta.config, "request_checksum_calculation", "when_supported") == "when_supported"
                self._uploader = PartUploader(self.client, o.multipart_chunksize, o.max_concurrency, o.max_concurrency, checksums=checksums)
            return self._uploader

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def _fail(self, exc: Exception, what: str) -> HistoryFSError:
        return s3_error(exc, what, self.bucket, self.endpoint_url)

    # -- primitives ------------------------------------------------------------------
    def _check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._fail(exc, "bucket check") from None

    def _scan(self) -> Mapping[str, int]:
        sizes: dict[str, int] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key("")):
                for obj in page.get("Contents", ()):
                    sizes[self._rel(obj["Key"])] = int(obj["Size"])
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._fail(exc, "listing") from None
        return sizes

    def _read(self, key: str) -> bytes | None:
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return self._read_once(key)
            except _BODY_ERRORS as exc:
                # botocore retries the request, not the reading of a streamed body cut short
                if attempt == READ_ATTEMPTS:
                    raise self._fail(exc, f"read of {key}") from None
                log.info("reading %s again after: %s", key, exc.__class__.__name__)
        raise AssertionError("unreachable")

    def _read_once(self, key: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with body:
                return bytes(body.read())
        except _BODY_ERRORS:
            raise
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, f"read of {key}") from None
        except bce.BotoCoreError as exc:
            raise self._fail(exc, f"read of {key}") from None

    def _write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        if info.size < self.options.multipart_threshold:
            self._store(key, [body.read()], info)
        else:
            self._store(key, iter(lambda: body.read(self.options.multipart_chunksize), b""), info)

    def _stream_threshold(self) -> int | None:
        return self.options.multipart_threshold

    def _write_stream(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        self._store(key, chunks, info)

    def _store(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        """One object from ``chunks``: a PutObject, or a multipart upload when it spans parts."""
        cancel = self._aborted if info.item_id is not None else None  # the manifest is still written
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"upload of {key} cancelled")
        try:
            self._parts().upload(self.bucket, self._key(key), chunks, self._extra_args(info), cancel)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._fail(exc, f"upload of {key}") from None
        except Cancelled:
            raise Cancelled(f"upload of {key} cancelled") from None

    def _extra_args(self, info: ObjectInfo) -> dict[str, Any]:
        o = self.options
        args: dict[str, Any] = {"ContentType": info.content_type}
        if info.item_id is not None:
            meta = {META_ITEM_ID: info.item_id, META_SHA256: info.sha256, META_FORMAT: info.format}
            args["Metadata"] = {k: v for k, v in meta.items() if v}  # sha256 is "" when streamed
        if o.storage_class and info.item_id is not None:
            args["StorageClass"] = o.storage_class
        if o.sse:
            args["ServerSideEncryption"] = o.sse
        if o.sse_kms_key_id:
            args["SSEKMSKeyId"] = o.sse_kms_key_id
        return args

    def _remove(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": self._key(k)} for k in keys[i : i + _DELETE_BATCH]]
            try:
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (bce.BotoCoreError, bce.ClientError) as exc:
                raise self._fail(exc, "delete") from None
            errors = answer.get("Errors") or []
            if errors:
                raise DestinationError(f"S3 delete of {errors[0].get('Key')} failed: {errors[0].get('Code')}")

    def _prepare(self) -> None:
        """Abort multipart uploads an interrupted run left in the exporter's namespace."""
        for key, upload_id in self.stale_uploads():
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except bce.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise self._fail(exc, "abort of a stale upload") from None

    def stale_uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of unfinished multipart uploads under the prefix in the exporter's namespace."""
        found: list[tuple[str, str]] = []
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self._key("")):
                found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", ()) if self._rel(u["Key"]).startswith(OWNED_ROOTS)]
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NO_UPLOAD_LISTING:
                return found  # some S3-compatible stores answer this way when there are none
            raise self._fail(exc, "listing of unfinished uploads") from None
        except bce.BotoCoreError as exc:
            raise self._fail(exc, "listing of unfinished uploads") from None
        return found

    def _abort(self) -> None:
        """Stop every item upload at its next part; their multipart uploads are aborted."""
        self._aborted.set()

    def _release(self) -> None:
        with self._uploader_lock:
            uploader, self._uploader = self._uploader, None
        if uploader is not None:
            uploader.close()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()
