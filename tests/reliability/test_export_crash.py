"""Crash consistency of `historyfs export` to S3 (moto): kill -9 at seeded random moments, then finish.

A bounded loop adds new items (small ones and a large one that goes multipart while it downloads),
starts the real CLI in a subprocess against a slowed fake API, kills it with SIGKILL after a
seeded random delay, and checks that whatever is visible is whole and right and that a manifest
left behind records only whole objects. A last run then completes, and
the bucket must hold exactly the selection's objects with the right bytes, a manifest agreeing
with them, and no unfinished multipart upload. Every subprocess is killed and reaped even when an
assertion fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from historyfs.fakeapi import FakeApiServer, Faults, Library
from tests.fixtures.s3 import S3Server
from tests.fixtures.waiting import run_then_kill_9
from tests.reliability.test_export_faults import MANIFEST, PREFIX, bucket_objects, expected_objects, open_uploads, verify_mirror, verify_partial

pytestmark = [pytest.mark.s3, pytest.mark.timeout(240)]

SEED = 4242
KEY = "sk_crash_5c1e0b7d9a3f"
SMALL, LARGE, LARGE_BYTES = 40, 1, 6 * 1024 * 1024
ROUNDS = 4
ROOT = Path(__file__).resolve().parents[2]
#: Slow enough that a large item takes ~4 s to arrive (its first 5 MiB part after ~3.3 s): every
#: round has one new large item, so a kill in the window below lands before the run could end,
#: sometimes mid-multipart and sometimes after the manifest's first flush (~3.6 s in).
SLOW = Faults(latency_ms=40, jitter=0.5, bandwidth=1536 * 1024)
KILL_WINDOW = (1.5, 4.5)  # seconds after start
NEW_PER_ROUND = 6  # small items added before each round (plus one large)


@pytest.fixture(scope="module")
def crash_api() -> Iterator[tuple[FakeApiServer, Library]]:
    with FakeApiServer(items=0, seed=SEED, api_key="crash-unused", faults=SLOW) as srv:
        lib = srv.add_tenant(KEY, items=0, seed=SEED)
        rng = random.Random(SEED)
        for i in range(SMALL):
            lib.add_item(audio_size=rng.randint(4_000, 40_000), date_unix=1_790_000_000 - i * 50_000)
        for i in range(LARGE):
            lib.add_item(audio_size=LARGE_BYTES, date_unix=1_790_000_000 - (SMALL + i) * 50_000)
        yield srv, lib


def command(bucket: str) -> list[str]:
    return [sys.executable, "-m", "historyfs", "export", f"s3://{bucket}/{PREFIX}", "--tz", "UTC", "--jobs", "8", "-q", "--multipart-chunk-size", "5M"]


def environment(api: FakeApiServer, s3: S3Server) -> dict[str, str]:
    return {**os.environ, **s3.env, "ELEVENLABS_API_KEY": KEY, "HISTORYFS_API_URL": api.base_url, "PYTHONPATH": str(ROOT)}


def run_and_kill(cmd: list[str], env: dict[str, str], after: float) -> int:
    """Start ``cmd``, SIGKILL it ``after`` seconds later (if still running); its exit status."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        try:
            proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_kill_9_at_random_moments_then_a_run_completes_exactly(crash_api: tuple[FakeApiServer, Library], s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    api, lib = crash_api
    cmd, env = command(s3_bucket), environment(api, s3_env)
    rng = random.Random(SEED)
    killed, visible, stale, manifests = 0, [], 0, 0
    for n in range(ROUNDS):
        _add_items(lib, rng, n)
        expected = expected_objects(lib)
        status = run_and_kill(cmd, env, after=rng.uniform(*KILL_WINDOW))
        killed += status == -signal.SIGKILL
        visible.append(verify_partial(s3_client, s3_bucket, expected))  # whatever is visible is whole and right
        stale += len(open_uploads(s3_client, s3_bucket))
        manifests += _manifest_consistent(s3_client, s3_bucket, expected)
    assert killed >= ROUNDS - 1  # (a round may finish before its kill on a fast machine)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    nbytes = verify_mirror(s3_client, s3_bucket, expected)
    print(f"\n[export-crash] kills={killed}/{ROUNDS} visible_after_each={visible} stale_multipart_seen={stale} manifests_seen={manifests} objects_verified={len(expected)} bytes_verified={nbytes}")


def _add_items(lib: Library, rng: random.Random, round_no: int) -> None:
    base = 1_800_000_000 + round_no * 1_000_000
    for i in range(NEW_PER_ROUND):
        lib.add_item(audio_size=rng.randint(4_000, 40_000), date_unix=base + i * 7_000)
    lib.add_item(audio_size=LARGE_BYTES, date_unix=base + 999_000)


def _manifest_consistent(client: Any, bucket: str, expected: dict[str, bytes]) -> int:
    """A manifest a killed run left (if any) records only objects that exist, whole, with its hash; 1 if there was one."""
    found = bucket_objects(client, bucket)
    if MANIFEST not in found:
        return 0
    recorded = json.loads(found.pop(MANIFEST))["objects"]
    for key, entry in recorded.items():
        data = found.get(f"{PREFIX}/{key}")
        assert data is not None and hashlib.sha256(data).hexdigest() == entry["sha256"] == hashlib.sha256(expected[key]).hexdigest()
    return 1


def test_a_run_killed_mid_multipart_leaves_nothing_visible_and_the_next_aborts_its_upload(crash_api: tuple[FakeApiServer, Library], s3_env: S3Server, s3_client: Any, s3_bucket: str) -> None:
    """Killed while a large item streams in parts: no object for it, an open upload, which the next run aborts."""
    api, lib = crash_api
    big = [d for d in lib.items() if len(lib.audio_bytes(d["history_item_id"])) >= 5 * 1024 * 1024]
    voice = big[0]["voice_name"]
    cmd = [*command(s3_bucket), "--voice", voice]
    env = environment(api, s3_env)
    try:
        run_then_kill_9(cmd, env, lambda: bool(open_uploads(s3_client, s3_bucket)))
    finally:
        api.set_faults(SLOW)
    assert open_uploads(s3_client, s3_bucket)
    expected = expected_objects(lib)
    verify_partial(s3_client, s3_bucket, expected)
    assert not [k for k in bucket_objects(s3_client, s3_bucket) if k.endswith(".mp3") and len(expected[k[len(PREFIX) + 1 :]]) >= 5 * 1024 * 1024]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert open_uploads(s3_client, s3_bucket) == []
    found = {k[len(PREFIX) + 1 :] for k in bucket_objects(s3_client, s3_bucket) if k != MANIFEST}
    assert _audio_key(expected, big[0]["history_item_id"]) in found
    assert verify_partial(s3_client, s3_bucket, expected) == len(found)


def _audio_key(expected: dict[str, bytes], item_id: str) -> str:
    """The audio key of ``item_id`` (found through its sidecar)."""
    for key, data in expected.items():
        if key.endswith(".json") and json.loads(data)["history_item_id"] == item_id:
            return key[: -len(".json")] + ".mp3"
    raise AssertionError(f"no sidecar for {item_id}")
