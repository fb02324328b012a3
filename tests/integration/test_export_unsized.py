"""Audio without Content-Length (a chunked response): it streams to the destination like any other,
large items as multipart uploads while they arrive, and a body cut short is never stored or recorded.

The fake API sits behind tests/fixtures/s3_proxy.py, which re-sends every answer chunked (and can
cut audio answers mid-body), so the client really sees ``content_length is None``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporters import export
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.s3_proxy import ProxyFaults, S3FaultProxy

pytestmark = pytest.mark.s3
BIG = 12 * 1024 * 1024  # about: above the 8 MiB streaming threshold, two parts of 8 MiB when the size is unknown


@pytest.fixture
def unsized(fake_tenant: Callable[..., FakeTenant]) -> Iterator[tuple[FakeTenant, S3FaultProxy]]:
    tenant = fake_tenant(items=3, seed=21)
    tenant.library.add_item(text="a long chapter", audio_size=BIG)
    with S3FaultProxy(tenant.base_url, faults=ProxyFaults(chunked=True)) as proxy:
        yield tenant, proxy


def _expected(tenant: FakeTenant) -> dict[str, bytes]:
    """item id -> audio bytes."""
    return {d["history_item_id"]: tenant.library.audio_bytes(d["history_item_id"]) for d in tenant.library.items()}


def _run(tenant: FakeTenant, proxy: S3FaultProxy, dest: str, **kw: Any) -> Any:
    return export(dest, api_key=tenant.api_key, api_url=proxy.url, tz="UTC", **kw)


class _Folder:
    def __init__(self, root: Path) -> None:
        self.root, self.url = root, str(root)

    def audio(self) -> dict[str, bytes]:
        """item id -> stored audio, found through the sidecars; temporary files must not exist."""
        assert not [p for p in self.root.rglob(".historyfs-tmp-*")]
        out = {}
        for side in self.root.rglob("*.json"):
            if not side.name.startswith("."):
                out[json.loads(side.read_bytes())["history_item_id"]] = side.with_suffix(".mp3").read_bytes()
        return out

    def open_uploads(self) -> list[str]:
        return []  # a folder has none; its temporary files are checked by audio()


class _Bucket:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket, self.url = client, bucket, f"s3://{bucket}/m"

    def _keys(self) -> list[str]:
        return [o["Key"] for p in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket) for o in p.get("Contents", ())]

    def _get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _sidecars(self) -> dict[str, str]:
        """item id -> audio key (found through the sidecars; the manifest is not one)."""
        keys = [k for k in self._keys() if k.endswith(".json") and "/." not in k]
        return {json.loads(self._get(k))["history_item_id"]: k[: -len(".json")] + ".mp3" for k in keys}

    def audio(self) -> dict[str, bytes]:
        return {item: self._get(key) for item, key in self._sidecars().items()}

    def etag(self, item_id: str) -> str:
        return str(self.client.head_object(Bucket=self.bucket, Key=self._sidecars()[item_id])["ETag"])

    def open_uploads(self) -> list[str]:
        return [u["Key"] for u in self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", ())]


@pytest.fixture(params=["folder", "s3"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "folder":
        return _Folder(tmp_path / "mirror")
    request.getfixturevalue("s3_env")
    return _Bucket(request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket"))


def test_audio_of_unknown_length_streams_with_exact_bytes(unsized: tuple[FakeTenant, S3FaultProxy], destination: Any) -> None:
    tenant, proxy = unsized
    summary = _run(tenant, proxy, destination.url)
    assert summary.uploaded == 4 and summary.failed == 0
    assert destination.audio() == _expected(tenant)
    big = max(_expected(tenant).items(), key=lambda kv: len(kv[1]))
    assert len(big[1]) > 8 * 1024 * 1024
    if isinstance(destination, _Bucket):
        assert destination.etag(big[0]).strip('"').endswith("-2")  # streamed as a multipart upload while it arrived


def test_a_cut_unsized_body_is_never_stored_or_recorded(unsized: tuple[FakeTenant, S3FaultProxy], destination: Any) -> None:
    tenant, proxy = unsized
    proxy.faults = ProxyFaults(chunked=True, cut_rate=1.0, cut_path="/audio")
    summary = _run(tenant, proxy, destination.url)
    assert summary.uploaded == 0 and summary.failed == 4 and all("cut short" in e and "of ? bytes" in e for e in summary.errors)  # length unknown
    assert proxy.counts["cut"] >= 4 and destination.audio() == {} and destination.open_uploads() == []
    proxy.faults = ProxyFaults(chunked=True)
    again = _run(tenant, proxy, destination.url)
    assert again.uploaded == 4 and destination.audio() == _expected(tenant)
    assert all(HistoryItem.from_json(d).history_item_id in destination.audio() for d in tenant.library.items())
