"""kill -9 mid-export, the manifest lost, then a re-run uploads only what was missing: for every kind of destination.

For S3 (moto), a folder, fsspec (FTP on loopback) and the third-party test plugin (memory://
with its log), the real CLI runs in a subprocess against a slowed fake API and is killed with
SIGKILL once a few items are stored. Its manifest is then removed (as when the kill came before
the first save, the case issue 13 found). The next run must upload exactly the items that were
not stored whole (recovering the others from what each destination recorded with its objects),
download no other audio, and leave every object exact. Every subprocess is killed and reaped
even when an assertion fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exporters.manifest import MANIFEST_KEY
from historyfs.fakeapi import FakeApiServer, Faults
from tests.fixtures.ftp import PASSWORD, FtpServer
from tests.fixtures.s3 import S3Server
from tests.fixtures.waiting import run_then_kill_9
from tests.plugins.install import InstalledPlugin
from tests.reliability.test_export_faults import bucket_objects, expected_objects

pytestmark = pytest.mark.timeout(240)

KEY = "sk_recovery_7d1f"
ITEMS = 30
ROOT = Path(__file__).resolve().parents[2]
SLOW = Faults(latency_ms=120, jitter=0.2)
STORED_BEFORE_KILL = 8  # objects (4 items) stored, then SIGKILL


@dataclass
class Dest:
    """A destination under test: its URL, extra environment, and how to see and change it directly."""

    url: str
    env: dict[str, str]
    contents: Callable[[], dict[str, bytes]]  # key -> bytes of every object, bookkeeping included
    drop_manifest: Callable[[], None]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(items=ITEMS, seed=13, api_key=KEY, faults=SLOW) as srv:
        yield srv


def _folder(tmp_path: Path) -> Dest:
    root = tmp_path / "mirror"

    def contents() -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}

    return Dest(str(root), {}, contents, lambda: (root / MANIFEST_KEY).unlink(missing_ok=True))


def _s3(s3: S3Server, client: Any, bucket: str) -> Dest:
    def contents() -> dict[str, bytes]:
        return {k[len("mirror/") :]: v for k, v in bucket_objects(client, bucket).items()}

    return Dest(f"s3://{bucket}/mirror", dict(s3.env), contents, lambda: client.delete_object(Bucket=bucket, Key=f"mirror/{MANIFEST_KEY}"))


def _ftp(ftp: FtpServer, folder: str) -> Dest:
    root = ftp.home / folder

    def contents() -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}

    return Dest(ftp.url(folder), {"FSSPEC_FTP_PASSWORD": PASSWORD}, contents, lambda: (root / MANIFEST_KEY).unlink(missing_ok=True))


def _plugin(plugin: InstalledPlugin, log: Path) -> Dest:
    def records() -> list[dict[str, Any]]:
        out = []
        for line in log.read_text().splitlines() if log.exists() else []:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by the kill
        return out

    def contents() -> dict[str, bytes]:
        import base64

        store: dict[str, bytes] = {}
        for rec in records():
            if "remove" in rec:
                store.pop(rec["remove"], None)
            else:
                store[rec["put"]] = base64.b64decode(rec["data"])
        return store

    def drop_manifest() -> None:
        log.write_text("".join(json.dumps(r) + "\n" for r in records() if r.get("put") != MANIFEST_KEY))

    return Dest(f"memory://recovery --dest-opt log={log}", plugin.env({}), contents, drop_manifest)


@pytest.fixture(params=["folder", "s3", "ftp", "plugin"])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    kind = request.param
    if kind == "folder":
        return _folder(tmp_path)
    if kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_env")
        return _s3(s3, request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket"))
    if kind == "ftp":
        return _ftp(request.getfixturevalue("ftp_server"), f"recovery-{os.getpid()}-{time.monotonic_ns()}")
    return _plugin(request.getfixturevalue("testplugin"), tmp_path / "store.log")


def command(dest: Dest, *extra: str) -> list[str]:
    url, *opts = dest.url.split(" ")
    return [sys.executable, "-m", "historyfs", "export", url, *opts, "--tz", "UTC", "--jobs", "2", "-q", *extra]


def environment(api: FakeApiServer, dest: Dest) -> dict[str, str]:
    base = {**os.environ, **dest.env, "ELEVENLABS_API_KEY": KEY, "HISTORYFS_API_URL": api.base_url}
    base["PYTHONPATH"] = os.pathsep.join(p for p in (dest.env.get("PYTHONPATH"), str(ROOT)) if p)
    return base


def kill_when_stored(cmd: list[str], env: dict[str, str], stored: Callable[[], int], count: int) -> None:
    run_then_kill_9(cmd, env, lambda: stored() >= count)


def settled(count: Callable[[], int], quiet: float = 0.5) -> int:
    """``count()`` once it has not changed for ``quiet`` seconds (bounded: 20 s)."""
    value, since, deadline = count(), time.monotonic(), time.monotonic() + 20
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := count()) != value:
            value, since = now, time.monotonic()
    return value


def audio_requests(api: FakeApiServer) -> int:
    return sum(1 for e in api.library.stats.entries() if e["endpoint"] == "audio")


def whole_items(found: dict[str, bytes], expected: dict[str, bytes]) -> int:
    """Items whose audio and sidecar are both stored with exact bytes."""
    sidecars = [k for k in expected if k.endswith(".json")]
    audio = {k: next(a for a in expected if a.rsplit(".", 1)[0] == k.rsplit(".", 1)[0] and a != k) for k in sidecars}
    return sum(1 for s, a in audio.items() if found.get(s) == expected[s] and found.get(a) == expected[a])


def test_kill_9_then_the_rerun_uploads_only_what_was_missing(api: FakeApiServer, dest: Dest) -> None:
    expected = expected_objects(api.library)
    env = environment(api, dest)
    ours = lambda: sum(1 for k in dest.contents() if k in expected)  # noqa: E731
    kill_when_stored(command(dest), env, ours, STORED_BEFORE_KILL)
    dest.drop_manifest()
    found = dest.contents()
    assert MANIFEST_KEY not in found
    assert all(expected[k] == v for k, v in found.items() if k in expected)  # whatever is visible is whole
    whole = whole_items(found, expected)
    assert whole >= 2
    audio_before = settled(lambda: audio_requests(api))  # the killed run's last requests are still being answered
    api.set_faults(Faults())
    try:
        rerun = subprocess.run([*command(dest, "--json")], env=env, capture_output=True, text=True, timeout=120)
    finally:
        api.set_faults(SLOW)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert (summary["uploaded"], summary["skipped"]) == (ITEMS - whole, whole)
    assert audio_requests(api) - audio_before == ITEMS - whole  # the recovered items were not even downloaded
    final = dest.contents()
    assert {k: v for k, v in final.items() if not k.startswith(".historyfs")} == expected
    print(f"\n[export-recovery] {dest.url.split(':')[0] if '://' in dest.url else 'folder'}: {whole} of {ITEMS} items recovered without an upload, {ITEMS - whole} uploaded")
