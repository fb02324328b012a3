"""exporters.s3_multipart against a real S3 server (moto, loopback)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import boto3.session
import pytest
from botocore.config import Config

from exporters.s3_multipart import PartUploader
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.s3
MIB = 1024 * 1024


@pytest.fixture
def client(s3_env: S3Server) -> Iterator[Any]:
    c = boto3.session.Session().client("s3", endpoint_url=s3_env.endpoint_url, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    try:
        yield c
    finally:
        c.close()


def chunks_of(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_a_stream_longer_than_a_part_goes_multipart_and_a_short_one_is_one_put(client: Any, s3_bucket: str) -> None:
    up = PartUploader(client, 5 * MIB, workers=4, max_parts=4, checksums=True)
    big, small = bytes(range(256)) * (12 * MIB // 256), b"short body"
    try:
        up.upload(s3_bucket, "big.mp3", chunks_of(big), {"ContentType": "audio/mpeg", "Metadata": {"historyfs-item-id": "i1"}})
        up.upload(s3_bucket, "small.mp3", chunks_of(small), {"ContentType": "audio/mpeg"})
    finally:
        up.close()
    head = client.head_object(Bucket=s3_bucket, Key="big.mp3")
    assert head["ETag"].strip('"').endswith("-3") and head["Metadata"] == {"historyfs-item-id": "i1"} and head["ContentType"] == "audio/mpeg"
    got = client.get_object(Bucket=s3_bucket, Key="big.mp3")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    assert "-" not in client.head_object(Bucket=s3_bucket, Key="small.mp3")["ETag"]
    assert client.get_object(Bucket=s3_bucket, Key="small.mp3")["Body"].read() == small


def test_a_stream_that_breaks_leaves_no_object_and_no_open_upload(client: Any, s3_bucket: str) -> None:
    def breaking() -> Iterator[bytes]:
        yield from chunks_of(b"\x01" * (11 * MIB))
        raise OSError("download cut")

    up = PartUploader(client, 5 * MIB, workers=2, max_parts=2, checksums=False)
    try:
        with pytest.raises(OSError, match="download cut"):
            up.upload(s3_bucket, "broken.mp3", breaking(), {})
    finally:
        up.close()
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
