"""exporters.base and exporters.s3 helpers: spooling, the manifest format, S3 URLs and error lines."""

from __future__ import annotations

import hashlib
import threading

import botocore.exceptions as bce
import pytest

from exporters.base import Cancelled, Entry, _dump_manifest, _parse_manifest, spool
from exporters.local import folder_from_url
from exporters.s3 import parse_s3_url, s3_error
from historyfs.errors import ConfigError


def test_spool_hashes_and_counts_and_rewinds() -> None:
    chunks = [b"a" * 1000, b"b" * 5, b""]
    s = spool(chunks)
    assert s.size == 1005 and s.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert s.file.read() == b"".join(chunks)


def test_spool_stops_when_cancelled() -> None:
    cancel = threading.Event()

    def chunks():  # type: ignore[no-untyped-def]
        yield b"x"
        cancel.set()
        yield b"y"

    with pytest.raises(Cancelled):
        spool(chunks(), cancel)


def test_manifest_round_trip_and_garbage() -> None:
    entries = {"b/k.mp3": Entry("id1", "ab", 3, "mp3"), "a/k.json": Entry("id1", "cd", 4, "json")}
    assert _parse_manifest(_dump_manifest(entries)) == entries
    for bad in (None, b"", b"not json", b'{"version": 99, "objects": {"k": {}}}', b'{"version": 1, "objects": {"k": {"item_id": 1}}}', b"[]"):
        assert _parse_manifest(bad) == {}


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://bucket", ("bucket", "")), ("s3://bucket/", ("bucket", "")), ("s3://b-1.x/a/b/", ("b-1.x", "a/b")), ("s3://bkt/My%20Folder", ("bkt", "My Folder"))],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3:///x", "s3://b", "s3://bucket/a/../b", "s3://bucket/a//b", "s3://bucket/x?y=1", "s3://bad bucket/x"])
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_s3_url(url)


def _client_error(code: str, status: int) -> bce.ClientError:
    return bce.ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadBucket")


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (bce.NoCredentialsError(), ConfigError, "no AWS credentials"),
        (bce.EndpointConnectionError(endpoint_url="http://x"), ConfigError, "cannot reach the S3 endpoint http://e"),
        (_client_error("404", 404), ConfigError, "S3 bucket 'b' does not exist"),
        (_client_error("NoSuchBucket", 404), ConfigError, "does not exist"),
        (_client_error("403", 403), ConfigError, "access denied to S3 bucket 'b'"),
        (_client_error("SlowDown", 503), Exception, "S3 listing failed: SlowDown: m"),
    ],
)
def test_s3_errors_become_one_line(exc: Exception, kind: type, text: str) -> None:
    err = s3_error(exc, "listing", "b", "http://e")
    assert isinstance(err, kind) and text in str(err) and "\n" not in str(err)


def test_folder_from_url() -> None:
    assert str(folder_from_url("file:///tmp/a%20b")) == "/tmp/a b"
    assert str(folder_from_url("file://localhost/tmp/x")) == "/tmp/x"
    with pytest.raises(ConfigError):
        folder_from_url("file://otherhost/tmp/x")
