"""exporters.s3_client: how the one botocore client is tuned (pool, checksums, payload signing).

The requests are captured at botocore's ``before-send`` event and answered there, so nothing
leaves the process: what is checked is what botocore would put on the wire.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from exporters import DestinationOptions
from exporters.s3_client import make_client


class _Raw:
    def stream(self, **_: Any) -> Any:
        return iter([b""])


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


def send(endpoint: str, checksum_mode: str | None = None, body: bytes = b"payload", operation: str = "PutObject") -> Any:
    """The request botocore would send for one PutObject (or UploadPart) of ``body`` through a client made for ``endpoint``."""
    client = make_client(DestinationOptions(endpoint_url=endpoint, region="us-east-1", checksum_mode=checksum_mode), 24)
    seen: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        seen.append(request)
        return AWSResponse(request.url, 200, {"ETag": '"e"'}, _Raw())

    client.meta.events.register(f"before-send.s3.{operation}", answer)
    try:
        if operation == "PutObject":
            client.put_object(Bucket="bucket", Key="k", Body=body)
        else:
            client.upload_part(Bucket="bucket", Key="k", UploadId="u", PartNumber=1, Body=body)
    finally:
        client.close()
    return seen[0]


def sent_headers(endpoint: str, checksum_mode: str | None = None) -> dict[str, str]:
    return {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in send(endpoint, checksum_mode).headers.items()}


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "http://localhost:9000", "https://minio.example:9000"])
def test_no_payload_hash_where_the_transport_protects_the_body(endpoint: str) -> None:
    assert sent_headers(endpoint)["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"


def test_payloads_are_signed_over_plain_http_to_another_host() -> None:
    assert sent_headers("http://minio.lan:9000")["x-amz-content-sha256"] == hashlib.sha256(b"payload").hexdigest()


@pytest.mark.parametrize("mode", [None, "when_supported", "when_required"])
def test_botocore_adds_no_checksum_of_its_own(mode: str | None) -> None:
    """The exporter adds the SHA-256 it has (see S3Destination._put); botocore computes nothing more."""
    assert not [h for h in sent_headers("http://127.0.0.1:9000", mode) if h.startswith("x-amz-checksum") or h == "content-md5"]


def test_one_client_with_a_pool_for_every_request_in_flight() -> None:
    client = make_client(DestinationOptions(endpoint_url="http://127.0.0.1:9000"), 40)
    try:
        assert client.meta.config.max_pool_connections == 40
        assert client.meta.config.s3["addressing_style"] == "path"
    finally:
        client.close()


@pytest.mark.parametrize("operation", ["PutObject", "UploadPart"])
def test_a_bytes_body_goes_out_as_is_without_waiting_for_100_continue(operation: str) -> None:
    """One sendall of the same bytes object (no BytesIO sent 16 KiB at a time, no extra round trip)."""
    body = b"x" * (3 * 1024 * 1024)
    request = send("http://127.0.0.1:9000", body=body, operation=operation)
    assert request.body is body and "Expect" not in request.headers


@pytest.mark.parametrize(
    ("body", "retried"),
    [
        (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name></ListBucketResult>', False),
        (b"<ListBucketResult><Name>b</Name></ListBucketResult>\n", False),
        (b'<?xml version="1.0"?><Error><Code>InternalError</Code></Error>', True),  # an error inside a 200
        (b'<?xml version="1.0"?><ListBucketResult><Name>b</Name><Contents><Key>', True),  # cut short
        (b"", False),
    ],
)
def test_an_error_or_a_cut_body_in_a_200_answer_is_still_retried(body: bytes, retried: bool) -> None:
    """botocore's check is kept: a 200 whose body is an <Error> or cut short becomes a 500 (retried)."""
    client = make_client(DestinationOptions(endpoint_url="http://127.0.0.1:9000", region="us-east-1"), 4)
    answer = {"status_code": 200, "body": body, "headers": {}}
    try:
        client.meta.events.emit("before-parse.s3.ListObjectsV2", operation_model=client.meta.service_model.operation_model("ListObjectsV2"),
                                response_dict=answer, customized_response_dict={})
    finally:
        client.close()
    assert (answer["status_code"] == 500) is retried
