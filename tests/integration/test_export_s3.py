"""`historyfs export s3://...` end to end: the fake API and a real S3 server (moto) on loopback.

Covers objects + metadata + manifest, incremental re-runs, --delete, multipart, S3 options,
stale multipart uploads, a run killed with SIGKILL then completed, and each bad S3 input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.models import HistoryItem
from tests.fixtures.s3 import S3Server
from tests.integration.test_export_cli import Tenant, api_server, cli, expected_files, tenant  # noqa: F401 - fixtures

pytestmark = pytest.mark.s3
PREFIX = "mirror/2026"
MANIFEST = f"{PREFIX}/.historyfs-manifest.json"
ROOT = Path(__file__).resolve().parents[2]


def objects(client: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            out[o["Key"]] = bytes(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
    return out


MARKER = f"{PREFIX}/.historyfs-multipart"


def mirrored(client: Any, bucket: str) -> dict[str, bytes]:
    """What the exporter put under PREFIX, keys relative to it, its bookkeeping (manifest, multipart marker) left out."""
    found = objects(client, bucket, PREFIX + "/")
    found.pop(MANIFEST, None)
    found.pop(MARKER, None)
    return {k[len(PREFIX) + 1 :]: v for k, v in found.items()}


def uploads_in_progress(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]


# -- the normal path -------------------------------------------------------------------------


def test_export_to_s3_with_metadata_then_rerun_uploads_nothing(tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str) -> None:
    r = cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["uploaded"] == 24
    assert mirrored(s3_client, s3_bucket) == expected_files(tenant, tenant.items())
    item = tenant.items()[5]
    key = f"{PREFIX}/{tenant.placements()[item.history_item_id].relpath('by-voice')}"
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    audio = tenant.lib.audio_bytes(item.history_item_id)
    assert head["Metadata"] == {"historyfs-item-id": item.history_item_id, "historyfs-sha256": hashlib.sha256(audio).hexdigest(), "historyfs-format": "mp3"}
    assert head["ContentType"] == item.content_type
    checked = s3_client.head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")  # the hash it computed anyway, verified by the store
    assert checked["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(audio).digest()).decode()
    manifest = json.loads(objects(s3_client, s3_bucket, MANIFEST)[MANIFEST])
    assert manifest["objects"][key[len(PREFIX) + 1 :]]["item_id"] == item.history_item_id
    audio_calls = len(tenant.requests("audio"))
    again = json.loads(cli("export", f"s3://{s3_bucket}/{PREFIX}/", "--tz", "UTC", "--json").out)
    assert (again["uploaded"], again["skipped"]) == (0, 24) and len(tenant.requests("audio")) == audio_calls


_PROBE = (
    "import sys; from historyfs.cli import main; code = main(sys.argv[1:]); "
    "print(sorted(m for m in ('boto3', 'botocore', 'elevenlabs') if m in sys.modules)); sys.exit(code)"
)


def _modules_loaded(tenant: Tenant, dest: str, uploaded: int) -> list[str]:
    env = {**os.environ, "ELEVENLABS_API_KEY": tenant.key, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _PROBE, "export", dest, "--tz", "UTC", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout[: r.stdout.rindex("}") + 1])["uploaded"] == uploaded
    return list(json.loads(r.stdout.strip().splitlines()[-1].replace("'", '"')))


def test_boto3_is_loaded_only_for_an_s3_destination(tenant: Tenant, s3_env: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    """Start fast: a folder run never imports boto3 (~0.3 s of CPU with its client); no run imports the SDK."""
    for uploaded in (24, 0):
        assert _modules_loaded(tenant, str(tmp_path / "folder"), uploaded) == []
        assert _modules_loaded(tenant, f"s3://{s3_bucket}/{PREFIX}", uploaded) == ["boto3", "botocore"]


def test_delete_on_s3_stays_inside_the_prefix(tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="mirror/outside.mp3", Body=b"not under the prefix")
    s3_client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/by-voice/foreign.mp3", Body=b"not ours")
    assert cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC").code == 0
    for item in tenant.items()[:2]:
        tenant.lib.delete(item.history_item_id)
    r = cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--delete", "--json")
    assert json.loads(r.out)["deleted"] == 4
    assert mirrored(s3_client, s3_bucket) == {**expected_files(tenant, tenant.items()), "by-voice/foreign.mp3": b"not ours"}
    assert objects(s3_client, s3_bucket, "mirror/outside.mp3")


def test_large_item_goes_multipart(tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str) -> None:
    big = HistoryItem.from_json(tenant.lib.add_item(text="a long audiobook chapter", voice_id="BigVoiceIdAAAAAAAAAA", voice_name="Big", audio_size=7 * 1024 * 1024))
    r = cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--voice", "Big", "--multipart-chunk-size", "5M")
    assert r.code == 0, r.err
    key = f"{PREFIX}/{tenant.placements()[big.history_item_id].relpath('by-voice')}"
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-2")  # two parts
    assert objects(s3_client, s3_bucket, key)[key] == tenant.lib.audio_bytes(big.history_item_id)
    assert uploads_in_progress(s3_client, s3_bucket) == []


def test_a_large_cached_item_is_one_put_and_a_large_download_streams_in_parts(tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    """From a mount's cache (size known, nothing to wait for): one PUT, its sha256 in the metadata.
    From the API: parts go out while it downloads (no part assembly is worth holding 9 MiB for)."""
    from historyfs.cache import BlobCache

    items = [HistoryItem.from_json(tenant.lib.add_item(text=f"chapter {n}", voice_id="BigVoiceIdBBBBBBBBBB", voice_name="Big", audio_size=9 * 1024 * 1024)) for n in (1, 2)]
    cache = BlobCache(tmp_path / "cache")
    try:
        w = cache.writer(f"{items[0].history_item_id}.mp3")
        w.write(tenant.lib.audio_bytes(items[0].history_item_id))
        w.commit()
    finally:
        cache.close()
    r = cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--voice", "Big", "--cache-dir", str(tmp_path / "cache"))
    assert r.code == 0, r.err
    keys = [f"{PREFIX}/{tenant.placements()[i.history_item_id].relpath('by-voice')}" for i in items]
    heads = [s3_client.head_object(Bucket=s3_bucket, Key=k) for k in keys]
    assert "-" not in heads[0]["ETag"] and heads[1]["ETag"].strip('"').endswith("-2")
    assert heads[0]["Metadata"]["historyfs-sha256"] == hashlib.sha256(tenant.lib.audio_bytes(items[0].history_item_id)).hexdigest()
    assert all(objects(s3_client, s3_bucket, k)[k] == tenant.lib.audio_bytes(i.history_item_id) for k, i in zip(keys, items, strict=True))


def test_storage_class_sse_and_checksum_mode(tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str) -> None:
    item = next(i for i in tenant.items() if i.voice_id)
    args = ("--storage-class", "STANDARD_IA", "--sse", "AES256", "--checksum-mode", "when_required", "--voice", item.voice_id or "")
    assert cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", *args).code == 0
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{tenant.placements()[item.history_item_id].relpath('by-voice')}", ChecksumMode="ENABLED")
    assert head["StorageClass"] == "STANDARD_IA" and head["ServerSideEncryption"] == "AES256"
    assert not [k for k in head if k.startswith("Checksum")]  # when_required: no checksum sent


def test_stale_multipart_uploads_of_the_exporter_are_aborted(tenant: Tenant, cli: Any, s3_client: Any, s3_bucket: str) -> None:
    """A run killed mid-multipart leaves its marker: the next run aborts what is left open in its namespace, then removes it."""
    ours = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/by-voice/X/2026-11/2026-11-01/half.mp3")
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/recent/2026-11-01 half.mp3")  # an export of --path recent
    theirs = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/someone-else/big.bin")
    s3_client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/.historyfs-multipart", Body=b"")
    assert cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--dry-run").code == 0
    assert len(uploads_in_progress(s3_client, s3_bucket)) == 3  # a dry run changes nothing
    assert cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC").code == 0
    assert uploads_in_progress(s3_client, s3_bucket) == [f"{PREFIX}/someone-else/big.bin"]
    assert ours["UploadId"] != theirs["UploadId"]
    assert MARKER not in objects(s3_client, s3_bucket, PREFIX)


# -- interrupted runs ------------------------------------------------------------------------


@pytest.fixture
def slow_api() -> Iterator[FakeApiServer]:
    with FakeApiServer(items=40, seed=3, api_key="slow-key", faults=Faults(latency_ms=120, jitter=0.2)) as srv:
        yield srv


def test_killed_run_leaves_no_partial_object_and_the_next_run_completes(slow_api: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    env = {**os.environ, "ELEVENLABS_API_KEY": "slow-key", "HISTORYFS_API_URL": slow_api.base_url, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "historyfs", "export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--jobs", "2", "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while len(objects(s3_client, s3_bucket, PREFIX)) < 6 and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    lib = slow_api.library
    expected = expected_files(Tenant(slow_api, lib, "slow-key"), [HistoryItem.from_json(d) for d in lib.items()])
    partial = mirrored(s3_client, s3_bucket)
    assert 0 < len(partial) < len(expected)
    assert all(expected[k] == v for k, v in partial.items())  # whatever is visible is whole
    slow_api.set_faults(Faults())
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert mirrored(s3_client, s3_bucket) == expected
    assert uploads_in_progress(s3_client, s3_bucket) == []


# -- bad S3 input ------------------------------------------------------------------------------


class _Deny(BaseHTTPRequestHandler):
    """An S3 endpoint that refuses everything with 403 AccessDenied."""

    def _deny(self) -> None:
        body = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _deny

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_refused(r: Any, t: Tenant, message: str) -> None:
    assert r.code == 1, r.out
    assert len(r.err.strip().splitlines()) == 1 and message in r.err and "Traceback" not in r.err
    assert t.requests("audio") == []


def test_missing_bucket(tenant: Tenant, cli: Any, s3_env: S3Server) -> None:
    _assert_refused(cli("export", "s3://no-such-bucket-here/x"), tenant, "S3 bucket 'no-such-bucket-here' does not exist")


def test_bad_bucket_name(tenant: Tenant, cli: Any, s3_env: S3Server) -> None:
    _assert_refused(cli("export", "s3://a/x"), tenant, "bad S3 bucket name")


def test_no_credentials(tenant: Tenant, cli: Any, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _assert_refused(cli("export", f"s3://{s3_bucket}/x"), tenant, "no AWS credentials")


def test_unknown_profile(tenant: Tenant, cli: Any, s3_env: S3Server, s3_bucket: str) -> None:
    _assert_refused(cli("export", f"s3://{s3_bucket}/x", "--profile", "nobody"), tenant, "AWS profile 'nobody' not found")


def test_credentials_from_a_profile(tenant: Tenant, cli: Any, s3_env: S3Server, s3_client: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keys in the environment, or with --profile, boto3's chain provides them to the S3 client."""
    creds = tmp_path / "credentials"
    creds.write_text(f"[backup]\naws_access_key_id = {s3_env.env['AWS_ACCESS_KEY_ID']}\naws_secret_access_key = {s3_env.env['AWS_SECRET_ACCESS_KEY']}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    r = cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--profile", "backup", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["uploaded"] == 24 and mirrored(s3_client, s3_bucket) == expected_files(tenant, tenant.items())


def test_access_denied(tenant: Tenant, cli: Any, s3_env: S3Server, denying_endpoint: str) -> None:
    _assert_refused(cli("export", "s3://locked-bucket/x", "--endpoint-url", denying_endpoint), tenant, "access denied to S3 bucket 'locked-bucket'")


def test_unreachable_endpoint(tenant: Tenant, cli: Any, s3_env: S3Server) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    _assert_refused(cli("export", "s3://some-bucket/x", "--endpoint-url", url), tenant, f"cannot reach the S3 endpoint {url}")


def test_sse_kms_key_needs_kms(tenant: Tenant, cli: Any, s3_env: S3Server, s3_bucket: str) -> None:
    _assert_refused(cli("export", f"s3://{s3_bucket}/x", "--sse-kms-key-id", "k1"), tenant, "--sse-kms-key-id needs --sse aws:kms")


# -- interruption and faults of the S3 side --------------------------------------------------


def test_abort_cancels_an_in_flight_multipart_upload(s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    """A large item streaming in parts when abort() comes: its upload is aborted, nothing is visible."""
    from exporters import DestinationOptions, Exporter, ItemUpload
    from exporters.s3 import S3Destination

    mib = 1024 * 1024
    released = threading.Event()

    def download() -> Iterator[bytes]:  # a body arriving in 64 KiB chunks; held after 12 MiB until the test releases it
        for n in range(24 * 16):
            if n == 12 * 16:
                released.wait(timeout=60)
            yield b"\x01" * (64 * 1024)

    opts = DestinationOptions(endpoint_url=s3_env.endpoint_url, multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    exp = Exporter(S3Destination(f"s3://{s3_bucket}/{PREFIX}", opts))
    up = ItemUpload("itemAAAAAAAAAAAAAAAA", "by-voice/V/2026-11/2026-11-01/big.mp3", "by-voice/V/2026-11/2026-11-01/big.json", download(), b"{}", "audio/mpeg", "mp3")
    errors: list[BaseException] = []

    def put() -> None:
        try:
            exp.put_item(up)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    worker = threading.Thread(target=put)
    worker.start()
    try:
        while not uploads_in_progress(s3_client, s3_bucket) and worker.is_alive():
            time.sleep(0.02)
        exp.abort()
    finally:
        released.set()
        worker.join(timeout=60)
        exp.close(persist=False)
    assert errors and "upload" in str(errors[0]) and "cancelled" in str(errors[0])
    assert uploads_in_progress(s3_client, s3_bucket) == []
    assert mirrored(s3_client, s3_bucket) == {}
    assert MARKER in objects(s3_client, s3_bucket, PREFIX)  # kept: the next run checks for uploads left open


def test_ctrl_c_records_what_finished_and_the_next_run_does_the_rest(slow_api: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    env = {**os.environ, "ELEVENLABS_API_KEY": "slow-key", "HISTORYFS_API_URL": slow_api.base_url, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "historyfs", "export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--jobs", "2", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while len(objects(s3_client, s3_bucket, PREFIX)) < 6 and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "historyfs export: interrupted"
    recorded = json.loads(objects(s3_client, s3_bucket, MANIFEST)[MANIFEST])["objects"]
    done_items = {v["item_id"] for v in recorded.values() if v["format"] == "mp3"}
    assert 0 < len(done_items) < 40
    slow_api.set_faults(Faults())
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    summary = json.loads(rerun.stdout)
    assert rerun.returncode == 0 and summary["uploaded"] <= 40 - len(done_items) + 2  # at most the items in flight again
    assert summary["skipped"] >= len(done_items) - 2
    assert uploads_in_progress(s3_client, s3_bucket) == []


def test_transient_s3_errors_are_retried(tenant: Tenant, cli: Any, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    from tests.fixtures.s3_proxy import ProxyFaults, S3FaultProxy

    with S3FaultProxy(s3_env.endpoint_url, seed=5, faults=ProxyFaults(error_rate=0.15)) as proxy:
        r = cli("export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--endpoint-url", proxy.url)
    assert r.code == 0, r.err
    assert proxy.counts["error"] > 0
    assert mirrored(s3_client, s3_bucket) == expected_files(tenant, tenant.items())
