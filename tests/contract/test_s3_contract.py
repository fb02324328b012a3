"""The destination contract for S3Destination against a real S3 server (moto, loopback)."""

from __future__ import annotations

from typing import Any

import pytest

from exporters import DestinationOptions, Exporter
from exporters.s3 import S3Destination
from exporters.testing import DestinationContract, upload
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.s3
PREFIX = "exports/mine"


class S3Harness:
    def __init__(self, client: Any, bucket: str, endpoint: str) -> None:
        self.client, self.bucket, self.endpoint = client, bucket, endpoint

    def open(self) -> S3Destination:
        return S3Destination(f"s3://{self.bucket}/{PREFIX}/", DestinationOptions(endpoint_url=self.endpoint))

    def read(self, key: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")["Body"].read())
        except self.client.exceptions.NoSuchKey:
            return None

    def write_foreign(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}", Body=data)


class TestS3Destination(DestinationContract):
    @pytest.fixture
    def harness(self, s3_client: Any, s3_bucket: str, s3_env: S3Server) -> S3Harness:
        return S3Harness(s3_client, s3_bucket, s3_env.endpoint_url)


def test_objects_carry_historyfs_metadata(s3_client: Any, s3_bucket: str, s3_env: S3Server) -> None:
    harness = S3Harness(s3_client, s3_bucket, s3_env.endpoint_url)
    exp = Exporter(harness.open())
    try:
        up = upload("itemAAAAAAAAAAAAAAAA")
        exp.put_item(up)
        head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{up.audio_key}")
        entry = exp.listing()[up.audio_key]
    finally:
        exp.close()
    assert head["Metadata"] == {"historyfs-item-id": up.item_id, "historyfs-sha256": entry.sha256, "historyfs-format": "mp3"}
    assert head["ContentType"] == "audio/mpeg"


def test_nothing_is_written_outside_the_prefix(s3_client: Any, s3_bucket: str, s3_env: S3Server) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="exports/other/keep.mp3", Body=b"not ours")
    exp = Exporter(S3Harness(s3_client, s3_bucket, s3_env.endpoint_url).open())
    try:
        exp.put_item(upload("itemAAAAAAAAAAAAAAAA"))
    finally:
        exp.close()
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert all(k.startswith(f"{PREFIX}/") or k == "exports/other/keep.mp3" for k in keys)
    assert f"{PREFIX}/.historyfs-manifest.json" in keys
