"""How S3Destination talks to S3: ONE botocore client per destination, shared by every transfer thread
(botocore clients are thread-safe), configured from DestinationOptions; S3 failures as one line.

boto3 is imported by this module, which only an S3 destination imports (a folder or plugin run
never loads it). The client is tuned as the fast S3 tools are:
- a connection pool as large as the requests a run keeps in flight (``--jobs`` plus the parts of
  multipart uploads), so no request waits for a connection and none is opened twice;
- botocore computes no checksum on its own (``request_checksum_calculation="when_required"``):
  with ``--checksum-mode when_supported`` (the default) the exporter adds the ones it has for
  free, the SHA-256 it computed anyway on every single PUT (x-amz-checksum-sha256, verified by the
  store) and a CRC32 per multipart part; ``when_required`` sends none (stores that reject them);
- no payload hash for signing where the transport already protects the body (https, or a
  loopback endpoint): s3v4 with ``payload_signing_enabled=False`` signs the headers and sends
  ``UNSIGNED-PAYLOAD``. Over plain http to any other host botocore hashes and signs payloads;
- PutObject and UploadPart bodies stay ``bytes``: botocore's S3 handler would wrap them in a
  BytesIO, which urllib3 then sends 16 KiB per ``sendall`` (3,000 calls and GIL hand-overs for a
  48 MiB object) after a round trip for "Expect: 100-continue"; a ``bytes`` body goes out in one
  ``sendall`` as soon as the headers are sent (a retry resends the same bytes);
- responses keep their timestamps as text (``timestamp_parser=str``, as the AWS CLI can): nothing
  reads them, and dateutil parsing the LastModified of every listed object was most of a no-op
  run's listing; and botocore's check for an error inside a 200 answer no longer parses each
  well-formed listing page a second time (``_error_in_200``).
Credentials: boto3's chain (environment, ``--profile``, SSO, instance roles), never argv.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3.session
import botocore.exceptions as bce
import botocore.handlers
import botocore.session
from botocore.config import Config

from historyfs.errors import ConfigError, HistoryFSError

from .base import DestinationError, DestinationOptions

#: botocore "standard" retries (throttling, 5xx, resets, cut responses) with exponential backoff:
#: 8 attempts ride out about 20 s of a flaky or briefly unreachable store.
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60  # seconds; a stalled store is a failed attempt, never a hang
_ACCESS_CODES = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "InvalidToken", "ExpiredToken")
_NO_UPLOAD_LISTING = ("NoSuchUpload", "NotImplemented")  # rclone serve s3 says NoSuchUpload when there are none
_LOOPBACK = ("localhost", "::1")
#: Errors of a response body cut short: botocore retries requests, not the reading of a body.
BODY_ERRORS = (bce.ResponseStreamingError, bce.IncompleteReadError, bce.ReadTimeoutError, bce.ConnectionClosedError)
ERRORS = (bce.BotoCoreError, bce.ClientError)


def endpoint_url(options: DestinationOptions) -> str | None:
    """--endpoint-url, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (boto3's order), else AWS."""
    return options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def is_protected(endpoint: str | None) -> bool:
    """Does the transport itself protect a payload (TLS, or a loopback connection)?"""
    if endpoint is None:
        return True  # AWS over https
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    return parts.scheme == "https" or host in _LOOPBACK or host.startswith("127.")


def make_client(options: DestinationOptions, pool: int) -> Any:
    """The botocore S3 client for a destination (no request is sent); ``pool``: connections kept."""
    endpoint = endpoint_url(options)
    s3: dict[str, Any] = {"addressing_style": "path"} if endpoint else {}
    if is_protected(endpoint):
        s3["payload_signing_enabled"] = False
    config = Config(
        signature_version="s3v4",
        max_pool_connections=pool,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        request_checksum_calculation="when_required",
        response_checksum_validation=options.checksum_mode or "when_required",
        s3=s3,
    )
    try:
        session = boto3.session.Session(botocore_session=_botocore_session(), profile_name=options.profile)
        client = session.client("s3", region_name=options.region, endpoint_url=endpoint, config=config)
    except bce.ProfileNotFound:
        raise ConfigError(f"AWS profile {options.profile!r} not found") from None
    except ValueError as exc:
        raise ConfigError(f"bad S3 endpoint URL {endpoint!r}: {exc}") from None
    events = client.meta.events
    for operation in ("PutObject", "UploadPart"):  # bytes bodies stay bytes (see above)
        events.unregister(f"before-parameter-build.s3.{operation}", botocore.handlers.convert_body_to_file_like_object)
    if _BOTOCORE_200_CHECK is not None:
        events.unregister("before-parse.s3.*", _BOTOCORE_200_CHECK)
        events.register_first("before-parse.s3.*", _error_in_200)
    return client


#: botocore's own check (S3 may answer 200 with an <Error> body, or a cut one: both are retried).
_BOTOCORE_200_CHECK = getattr(botocore.handlers, "_handle_200_error", None)
_ROOT_TAG = re.compile(rb"<([A-Za-z][\w.:-]*)[\s/>]")  # the first element, after any <?xml ...?>


def _error_in_200(operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
    """botocore's check, skipped for a body that plainly is a whole document other than <Error>
    (it parses the whole body once more: a tenth of a no-op run, for its listing)."""
    body = response_dict.get("body") if response_dict else None
    if isinstance(body, bytes) and response_dict.get("status_code") == 200 and _whole_and_not_an_error(body):
        return
    assert _BOTOCORE_200_CHECK is not None
    _BOTOCORE_200_CHECK(operation_model=operation_model, response_dict=response_dict, **kwargs)


def _whole_and_not_an_error(body: bytes) -> bool:
    root = _ROOT_TAG.search(body, 0, 512)
    return root is not None and root.group(1) != b"Error" and body[-256:].rstrip().endswith(b"</" + root.group(1) + b">")


def _botocore_session() -> botocore.session.Session:
    """A botocore session whose responses keep timestamps as text (see the module's docstring)."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return session


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ("NoSuchKey", "404"...), else ""."""
    if not isinstance(exc, bce.ClientError):
        return ""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def s3_error(exc: BaseException, what: str, bucket: str, endpoint: str | None) -> HistoryFSError:
    """One line for a boto3/botocore failure (never contains credentials: they are in signed headers)."""
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return ConfigError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile")
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError)):
        return ConfigError(f"cannot reach the S3 endpoint {endpoint or 'of AWS'}")
    code = error_code(exc)
    if code == "NoSuchBucket":
        return ConfigError(f"S3 bucket {bucket!r} does not exist")
    if code in _ACCESS_CODES:
        return ConfigError(f"access denied to S3 bucket {bucket!r} ({code})")
    if isinstance(exc, bce.ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return DestinationError(f"S3 {what} failed: {code}: {message}".rstrip(": "))
    return DestinationError(f"S3 {what} failed: {_first_line(str(exc) or exc.__class__.__name__)}")


def list_sizes(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under ``prefix`` (ListObjectsV2, 1,000 keys a page)."""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes.update((o["Key"], int(o["Size"])) for o in page.get("Contents", ()))
    return sizes


def stale_uploads(client: Any, bucket: str, prefix: str, owned: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """(key, upload id) of unfinished multipart uploads under ``prefix`` whose key ``owned`` accepts."""
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            yield from ((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()) if owned(u["Key"]))
    except bce.ClientError as exc:
        if error_code(exc) not in _NO_UPLOAD_LISTING:  # some stores say this when there are none
            raise


def abort_upload(client: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; one already gone is not an error."""
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except bce.ClientError as exc:
        if error_code(exc) != "NoSuchUpload":
            raise


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line if len(line) <= 200 else line[:197] + "..."
