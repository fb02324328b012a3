"""What S3Exporter asks boto3 for, imported only when needed: the full credential chain, the region
of a bucket, unfinished multipart uploads, and a listing of keys obstore cannot represent.

A run whose credentials and region come from the environment and which has nothing to upload
never imports this module (boto3 costs about 250 ms to import and to build a client).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3.session
import botocore.exceptions as bce
from botocore.config import Config

from historyfs.errors import ConfigError, HistoryFSError

from .base import DestinationError

log = logging.getLogger(__name__)

#: How long obstore may keep credentials before asking again (boto3 refreshes its own underneath).
CREDENTIALS_TTL = timedelta(minutes=5)
_NO_UPLOAD_LISTING = ("NoSuchUpload", "NotImplemented")  # rclone serve s3 says NoSuchUpload when none


def session(profile: str | None) -> boto3.session.Session:
    try:
        return boto3.session.Session(profile_name=profile)
    except bce.ProfileNotFound:
        raise ConfigError(f"AWS profile {profile!r} not found") from None


def credential_provider(s: boto3.session.Session) -> Callable[[], dict[str, Any]]:
    """An obstore credential provider over boto3's chain; ConfigError if the chain finds nothing."""
    try:
        creds = s.get_credentials()
    except bce.BotoCoreError as exc:
        raise ConfigError(f"cannot load AWS credentials: {exc}") from None
    if creds is None:
        raise ConfigError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile")

    def provide() -> dict[str, Any]:
        frozen = creds.get_frozen_credentials()
        out = {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key, "expires_at": datetime.now(timezone.utc) + CREDENTIALS_TTL}
        return {**out, "token": frozen.token} if frozen.token else out

    return provide


def client(s: boto3.session.Session, endpoint: str | None, region: str) -> Any:
    """A botocore S3 client for the control plane (same endpoint, region and credentials as the store)."""
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    try:
        return s.client("s3", region_name=region, endpoint_url=endpoint, config=config)
    except ValueError as exc:
        raise ConfigError(f"bad S3 endpoint URL {endpoint!r}: {exc}") from None


def bucket_region(c: Any, bucket: str) -> str:
    """The region a bucket lives in (HeadBucket answers it even when refusing access)."""
    try:
        answer = c.head_bucket(Bucket=bucket)
    except bce.ClientError as exc:
        answer = exc.response
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
            raise ConfigError(f"S3 bucket {bucket!r} does not exist") from None
    except bce.BotoCoreError as exc:
        raise ConfigError(f"cannot find the region of S3 bucket {bucket!r}: {exc}") from None
    region = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    return str(region or "us-east-1")


def stale_uploads(c: Any, bucket: str, prefix: str, owned: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """(key, upload id) of unfinished multipart uploads under ``prefix`` whose key ``owned`` accepts."""
    try:
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            yield from ((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()) if owned(u["Key"]))
    except bce.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _NO_UPLOAD_LISTING:  # some stores say this when there are none
            raise _fail(exc, "listing of unfinished uploads") from None
    except bce.BotoCoreError as exc:
        raise _fail(exc, "listing of unfinished uploads") from None


def abort_upload(c: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except bce.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise _fail(exc, "abort of a stale upload") from None
    except bce.BotoCoreError as exc:
        raise _fail(exc, "abort of a stale upload") from None


def list_sizes(c: Any, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under ``prefix`` (keys as S3 has them, any characters)."""
    sizes: dict[str, int] = {}
    try:
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            sizes.update((o["Key"], int(o["Size"])) for o in page.get("Contents", ()))
    except (bce.BotoCoreError, bce.ClientError) as exc:
        raise _fail(exc, "listing") from None
    return sizes


def _fail(exc: Exception, what: str) -> HistoryFSError:
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        return DestinationError(f"S3 {what} failed: {err.get('Code', '')}: {err.get('Message', '')}".rstrip(": "))
    return DestinationError(f"S3 {what} failed: {exc}")
