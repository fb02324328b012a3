"""Exports to S3 (moto) under faults of the API and of S3: every object ends whole and right.

The fake API serves 120 small items (seeded) to one key; each test turns on one fault (or all of
them), exports everything, then checks the bucket against the server's own bytes: exactly the
selection's keys, every object's sha256 equal to ``lib.audio_bytes``/the sidecar, the manifest
agreeing with both, no unfinished multipart upload. Where retries run out the run must say so
(summary.failed, exit 1) and a re-run must converge. Each test also asserts that its fault was
really injected (server or proxy counters), so none passes by accident. Figures are printed
(run with ``-s`` to see them). Hangs are guarded by pytest-timeout, never by timing assertions.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporters import DestinationOptions, ExportSummary, export
from exporters.progress import Snapshot
from historyfs.cli import main
from historyfs.client import HistoryClient, RetryPolicy
from historyfs.fakeapi import FakeApiServer, Faults, Library
from historyfs.config import parse_tz
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.s3 import S3Server
from tests.fixtures.s3_proxy import ProxyFaults, S3FaultProxy

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]

SEED = 20261123
KEY = "sk_reliability_7f3a9c0e5b1d4e2a8c6f"  # distinctive: searched for in everything written
ITEMS = 120
PREFIX = "mirror"
MANIFEST = f"{PREFIX}/.historyfs-manifest.json"
MARKER = f"{PREFIX}/.historyfs-multipart"  # left by a run interrupted mid-multipart; removed by the next complete run
BASE_DATE = 1_790_000_000


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApiServer]:
    """A server of its own (faults are server-wide): ITEMS small items behind KEY, dates spread over months."""
    with FakeApiServer(items=0, seed=SEED, api_key="reliability-unused") as srv:
        lib = srv.add_tenant(KEY, items=0, seed=SEED)
        rng = random.Random(SEED)
        for i in range(ITEMS):
            lib.add_item(audio_size=rng.randint(4_000, 40_000), date_unix=BASE_DATE - i * 97_000)
        yield srv


@pytest.fixture
def faults(api: FakeApiServer) -> Iterator[FakeApiServer]:
    """The server; its faults are switched off again whatever happens."""
    try:
        yield api
    finally:
        api.set_faults(Faults())


def library(api: FakeApiServer) -> Library:
    lib = api.tenant(KEY)
    assert lib is not None
    return lib


# -- what the bucket must hold --------------------------------------------------------------


def expected_objects(lib: Library) -> dict[str, bytes]:
    """Relative key -> bytes of every object of a full export (layout in UTC)."""
    items = [HistoryItem.from_json(d) for d in lib.items()]
    places = Layout(parse_tz("UTC")).place_all(items)
    out: dict[str, bytes] = {}
    for item in items:
        p = places[item.history_item_id]
        out[p.relpath("by-voice", "audio")] = lib.audio_bytes(item.history_item_id)
        out[p.relpath("by-voice", "sidecar")] = item.to_json_bytes()
    return out


def bucket_objects(client: Any, bucket: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX + "/"):
        for o in page.get("Contents", ()):
            found[o["Key"]] = bytes(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
    return found


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_mirror(client: Any, bucket: str, expected: dict[str, bytes]) -> int:
    """The bucket holds exactly ``expected`` (bytes compared by sha256) and a manifest agreeing with it; returns bytes verified."""
    found = bucket_objects(client, bucket)
    manifest = json.loads(found.pop(MANIFEST))["objects"]
    mirrored = {k[len(PREFIX) + 1 :]: v for k, v in found.items()}
    assert sorted(mirrored) == sorted(expected)
    wrong = [k for k, v in mirrored.items() if sha(v) != sha(expected[k])]
    assert wrong == []
    assert sorted(manifest) == sorted(expected)
    assert all(manifest[k]["sha256"] == sha(v) and manifest[k]["size"] == len(v) for k, v in expected.items())
    assert open_uploads(client, bucket) == []
    return sum(len(v) for v in expected.values())


def verify_partial(client: Any, bucket: str, expected: dict[str, bytes]) -> int:
    """Whatever a failed run left is whole and right (no short or wrong object); returns how many objects."""
    found = bucket_objects(client, bucket)
    found.pop(MANIFEST, None)
    found.pop(MARKER, None)
    mirrored = {k[len(PREFIX) + 1 :]: v for k, v in found.items()}
    assert set(mirrored) <= set(expected)
    assert [k for k, v in mirrored.items() if sha(v) != sha(expected[k])] == []
    return len(mirrored)


# -- running exports ------------------------------------------------------------------------


def run_export(api: FakeApiServer, bucket: str, endpoint: str, *, retry: RetryPolicy | None = None, progress: Callable[[Snapshot], None] | None = None) -> ExportSummary:
    client = HistoryClient(KEY, api.base_url, retry=retry or RetryPolicy(), max_connections=32)
    try:
        return export(f"s3://{bucket}/{PREFIX}", client=client, tz="UTC", jobs=8, progress=progress, destination=DestinationOptions(endpoint_url=endpoint))
    finally:
        client.close()


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Faults the server injected between two stats snapshots, by kind."""
    def statuses(s: dict[str, Any], code: str) -> int:
        return sum(v.get(code, 0) for v in s["requests"].values())

    out = {k: after[k] - before[k] for k in ("truncated", "resets")}
    out.update({code: statuses(after, code) - statuses(before, code) for code in ("429", "500", "503")})
    return out


def report(name: str, **figures: object) -> None:
    print(f"\n[export-faults] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def converge(api: FakeApiServer, bucket: str, endpoint: str, s3_client: Any, first: ExportSummary) -> tuple[int, int]:
    """After a run that may have failed items: check what it left, re-run without faults, check the mirror."""
    expected = expected_objects(library(api))
    if first.failed:
        assert len(first.errors) == first.failed and first.uploaded + first.failed == first.selected
        verify_partial(s3_client, bucket, expected)
        api.set_faults(Faults())
        again = run_export(api, bucket, endpoint)
        assert (again.failed, again.uploaded, again.skipped) == (0, first.failed, first.uploaded)
    return len(expected), verify_mirror(s3_client, bucket, expected)


# -- API faults, one at a time --------------------------------------------------------------

API_FAULTS = {
    "latency+jitter": Faults(latency_ms=40, jitter=0.8),
    "429 Retry-After": Faults(rate_limit=30),
    "500/503 at 10%": Faults(fail_rate=0.10),
    "bodies cut at 5%": Faults(truncate_rate=0.05),
}


@pytest.mark.parametrize("name", list(API_FAULTS))
def test_one_api_fault_then_every_object_is_right(name: str, faults: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    faults.set_faults(API_FAULTS[name])
    before = faults.stats()
    summary = run_export(faults, s3_bucket, s3_env.endpoint_url)
    injected = delta(before, faults.stats())
    objects, nbytes = converge(faults, s3_bucket, s3_env.endpoint_url, s3_client, summary)
    if name != "latency+jitter":
        assert sum(injected.values()) > 0, injected  # the fault really happened
    report(name, injected=injected, failed_first_run=summary.failed, objects_verified=objects, bytes_verified=nbytes)


def test_all_api_faults_together_converge_after_a_rerun(faults: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    faults.set_faults(Faults(latency_ms=20, jitter=0.8, rate_limit=30, fail_rate=0.10, truncate_rate=0.05))
    before = faults.stats()
    summary = run_export(faults, s3_bucket, s3_env.endpoint_url)
    injected = delta(before, faults.stats())
    assert injected["truncated"] > 0 and injected["500"] + injected["503"] > 0 and injected["429"] > 0
    objects, nbytes = converge(faults, s3_bucket, s3_env.endpoint_url, s3_client, summary)
    report("all together", injected=injected, failed_first_run=summary.failed, objects_verified=objects, bytes_verified=nbytes)


# -- an outage in the middle of an export ---------------------------------------------------


class OutageSwitch:
    """Turns an outage on after ``after`` finished items (from the progress callback's thread) and off ``seconds`` later."""

    def __init__(self, api: FakeApiServer, after: int, seconds: float) -> None:
        self.api, self.after, self.seconds = api, after, seconds
        self.started = threading.Event()
        self.ended = threading.Event()
        self.done_at_start = 0
        self._timer: threading.Timer | None = None

    def __call__(self, snap: Snapshot) -> None:
        if snap.items_done >= self.after and not self.started.is_set():
            self.started.set()
            self.done_at_start = snap.items_done
            self.api.set_faults(Faults(outage=True))
            self._timer = threading.Timer(self.seconds, self.end)
            self._timer.start()

    def end(self) -> None:
        self.api.set_faults(Faults())
        self.ended.set()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.end()


def test_outage_of_three_seconds_mid_export_is_ridden_out(faults: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    faults.set_faults(Faults(latency_ms=15))  # so that the export is still running when the outage starts
    switch = OutageSwitch(faults, after=30, seconds=3.0)
    before = faults.stats()
    try:
        summary = run_export(faults, s3_bucket, s3_env.endpoint_url, progress=switch)
    finally:
        switch.cancel()
    injected = delta(before, faults.stats())
    assert switch.started.is_set() and injected["resets"] > 0
    assert summary.failed == 0 and summary.uploaded == ITEMS  # the client's retries outlast a 3 s outage
    objects, nbytes = converge(faults, s3_bucket, s3_env.endpoint_url, s3_client, summary)
    report("outage 3 s", resets=injected["resets"], done_before_outage=switch.done_at_start, recovered_after=ITEMS - switch.done_at_start, objects_verified=objects, bytes_verified=nbytes)


class AudioWatcher:
    """Turns an outage on (for good) once the server has answered ``after`` audio requests; polls from a thread."""

    def __init__(self, api: FakeApiServer, after: int) -> None:
        self.api, self.after = api, after
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="outage-watcher", daemon=True)

    def _served(self) -> int:
        return sum(1 for e in library(self.api).stats.entries() if e["endpoint"] == "audio" and e["status"] == 200)

    def _watch(self) -> None:
        base = self._served()
        while not self._stop.wait(0.005):
            if self._served() - base >= self.after:
                self.api.set_faults(Faults(outage=True))
                self.started.set()
                return

    def __enter__(self) -> AudioWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.api.set_faults(Faults())


def test_outage_past_the_deadline_fails_items_exit_1_then_a_rerun_converges(faults: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--api-deadline bounds each item: the run ends (no hang) with exit 1 and one line per failed item."""
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    args = ["export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--api-url", faults.base_url, "-q", "--api-deadline", "0.5"]
    faults.set_faults(Faults(latency_ms=15))
    with AudioWatcher(faults, after=ITEMS - 24) as watcher:
        code = main(args)
    first = capsys.readouterr()
    failed = [line for line in first.err.splitlines() if line.startswith("historyfs export: failed: ")]
    assert watcher.started.is_set() and code == 1 and "Traceback" not in first.err
    assert 0 < len(failed) <= 24 and f"{len(failed)} failed" in first.out
    expected = expected_objects(library(faults))
    assert verify_partial(s3_client, s3_bucket, expected) == 2 * (ITEMS - len(failed))
    assert main(args) == 0
    rerun = capsys.readouterr().out
    assert f"{len(failed)} uploaded" in rerun and "0 failed" in rerun
    nbytes = verify_mirror(s3_client, s3_bucket, expected)
    report("outage past --api-deadline (CLI)", failed_first_run=len(failed), objects_verified=len(expected), bytes_verified=nbytes)


# -- S3 faults ------------------------------------------------------------------------------

S3_FAULTS = {
    "503/500 at 10% + resets at 5%": ProxyFaults(error_rate=0.10, reset_rate=0.05),
    "cut responses at 10% + 20 ms delay": ProxyFaults(cut_rate=0.10, delay_s=0.02),
}


@pytest.mark.parametrize("name", list(S3_FAULTS))
def test_s3_faults_are_retried_and_a_rerun_converges(name: str, api: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    with S3FaultProxy(s3_env.endpoint_url, seed=SEED, faults=S3_FAULTS[name]) as proxy:
        first = run_export(api, s3_bucket, proxy.url)
        second = run_export(api, s3_bucket, proxy.url)  # still through the faults: converges
        counts = dict(proxy.counts)
    expected = expected_objects(library(api))
    assert first.uploaded + second.uploaded == ITEMS and second.failed == 0
    nbytes = verify_mirror(s3_client, s3_bucket, expected)
    assert sum(v for k, v in counts.items() if k != "ok") > 0, counts
    report(f"S3 {name}", injected=counts, failed_first_run=first.failed, objects_verified=len(expected), bytes_verified=nbytes)


def test_a_large_item_streams_through_s3_faults_without_a_partial_object(faults: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    """Multipart while downloading, with S3 errors and resets: whole object, sha256 in the manifest, no open upload."""
    lib = library(faults)
    big = lib.add_item(audio_size=11 * 1024 * 1024, date_unix=BASE_DATE + 86_400, voice_name="Big Reliability", voice_id="BigReliabilityVoice0")
    try:
        with S3FaultProxy(s3_env.endpoint_url, seed=SEED + 1, faults=ProxyFaults(error_rate=0.1, reset_rate=0.05)) as proxy:
            client = HistoryClient(KEY, faults.base_url)
            try:
                opts = DestinationOptions(endpoint_url=proxy.url, multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
                summary = export(f"s3://{s3_bucket}/{PREFIX}", client=client, tz="UTC", voices=("Big Reliability",), destination=opts)
            finally:
                client.close()
        assert summary.uploaded == 1 and summary.failed == 0
        found = bucket_objects(s3_client, s3_bucket)
        manifest = json.loads(found.pop(MANIFEST))["objects"]
        audio_key = next(k for k in found if k.endswith(".mp3"))
        data = lib.audio_bytes(big["history_item_id"])
        assert sha(found[audio_key]) == sha(data) == manifest[audio_key[len(PREFIX) + 1 :]]["sha256"]
        assert s3_client.head_object(Bucket=s3_bucket, Key=audio_key)["ETag"].strip('"').endswith("-3")  # streamed in parts
        assert open_uploads(s3_client, s3_bucket) == []
    finally:
        lib.delete(big["history_item_id"])


# -- the API key stays secret ---------------------------------------------------------------


def test_the_api_key_appears_nowhere(faults: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    log_file = tmp_path / "debug.log"
    faults.set_faults(Faults(fail_rate=0.3, truncate_rate=0.1))  # errors get logged and reported too
    voice = HistoryItem.from_json(library(faults).items()[0]).voice_name or ""
    code = main(["export", f"s3://{s3_bucket}/{PREFIX}", "--tz", "UTC", "--api-url", faults.base_url, "--voice", voice, "--debug", "--log-file", str(log_file)])
    out = capsys.readouterr()
    faults.set_faults(Faults())
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY + "-wrong")
    bad = main(["export", f"s3://{s3_bucket}/{PREFIX}", "--api-url", faults.base_url])
    bad_out = capsys.readouterr()
    assert code in (0, 1) and bad == 1 and "error" in bad_out.err
    written = bucket_objects(s3_client, s3_bucket)
    heads = [s3_client.head_object(Bucket=s3_bucket, Key=k) for k in written]
    assert written and log_file.stat().st_size > 0
    haystacks = [*written.values(), json.dumps([h["Metadata"] for h in heads]).encode(), log_file.read_bytes()]
    haystacks += [s.encode() for s in (out.out, out.err, bad_out.out, bad_out.err)]
    assert not [h[:80] for h in haystacks if KEY.encode() in h]
    report("API key", objects_scanned=len(written), log_bytes=log_file.stat().st_size)
