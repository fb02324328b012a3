"""S3Exporter: mirror into ``s3://bucket/prefix`` on AWS or any S3-compatible store (boto3).

Uploads go through one shared s3transfer TransferManager (multipart above the threshold, parts
in parallel). Each object carries user metadata x-amz-meta-historyfs-item-id, -sha256 (of its
bytes) and -format; the hash is known before the upload starts because the base class spools
the audio first (memory, or a temp file above 4 MiB). A PUT or a completed multipart upload is
atomic, so no partial object is ever visible; on Ctrl-C ``abort`` cancels the manager, which
aborts its multipart uploads, and ``prepare`` aborts stale uploads an earlier (killed) run left
under the prefix in the exporter's namespace (by-voice/, by-date/, the manifest).
Credentials come from the standard boto3 chain (env, profile, instance role), never from argv.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore.exceptions as bce
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config

from historyfs.errors import ConfigError, HistoryFSError

from .base import MANIFEST_KEY, DestinationError, DestinationOptions, Exporter, ObjectInfo

#: Top-level folders of the exporter's keys: uploads left unfinished there are ours to abort.
OWNED_ROOTS = ("by-voice/", "by-date/", MANIFEST_KEY)
META_ITEM_ID, META_SHA256, META_FORMAT = "historyfs-item-id", "historyfs-sha256", "historyfs-format"
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_DELETE_BATCH = 1000  # the DeleteObjects maximum
_NO_UPLOAD_LISTING = ("NoSuchUpload", "NotImplemented")  # rclone serve s3 says NoSuchUpload when none


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
        self._manager: Any = None
        self._manager_lock = threading.Lock()  # guards _manager and _in_flight
        self._in_flight: set[Any] = set()  # s3transfer TransferFutures not finished yet

    # -- setup -----------------------------------------------------------------------
    def _make_client(self) -> Any:
        o = self.options
        try:
            session = boto3.session.Session(profile_name=o.profile, region_name=o.region)
        except bce.ProfileNotFound:
            raise ConfigError(f"AWS profile {o.profile!r} not found") from None
        checksum = {"request_checksum_calculation": o.checksum_mode, "response_checksum_validation": o.checksum_mode} if o.checksum_mode else {}
        config = Config(
            max_pool_connections=max(16, o.max_concurrency * 2),
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            **checksum,
        )
        try:
            return session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except ValueError as exc:
            raise ConfigError(f"bad S3 endpoint URL {self.endpoint_url!r}: {exc}") from None

    def _transfer(self) -> Any:
        with self._manager_lock:
            if self._manager is None:
                o = self.options
                cfg = TransferConfig(multipart_threshold=o.multipart_threshold, multipart_chunksize=o.multipart_chunksize, max_concurrency=o.max_concurrency)
                self._manager = create_transfer_manager(self.client, cfg)
            return self._manager

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
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with body:
                return bytes(body.read())
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, f"read of {key}") from None
        except bce.BotoCoreError as exc:
            raise self._fail(exc, f"read of {key}") from None

    def _write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        future = self._transfer().upload(body, self.bucket, self._key(key), extra_args=self._extra_args(info))
        with self._manager_lock:
            self._in_flight.add(future)
        try:
            future.result()
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._fail(exc, f"upload of {key}") from None
        except Exception as exc:  # s3transfer wraps failures (S3UploadFailedError, CancelledError)
            raise DestinationError(f"S3 upload of {key} failed: {exc.__class__.__name__}: {exc}") from None
        finally:
            with self._manager_lock:
                self._in_flight.discard(future)

    def _extra_args(self, info: ObjectInfo) -> dict[str, Any]:
        o = self.options
        args: dict[str, Any] = {"ContentType": info.content_type}
        if info.item_id is not None:
            args["Metadata"] = {META_ITEM_ID: info.item_id, META_SHA256: info.sha256, META_FORMAT: info.format}
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
        """Cancel every upload in flight; s3transfer then aborts their multipart uploads.

        (Not ``TransferManager.shutdown(cancel=True)``: s3transfer passes its message as the
        exception type there and fails.)"""
        with self._manager_lock:
            futures, manager, self._manager = list(self._in_flight), self._manager, None
        for future in futures:
            future.cancel()
        if manager is not None:
            manager.shutdown()

    def _release(self) -> None:
        with self._manager_lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.shutdown()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()
