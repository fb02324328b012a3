"""`historyfs export DEST --watch`: the real CLI in a subprocess, the fake API on loopback (adding
items by itself or through the library), moto as S3 (behind the fault proxy where S3 must fail)
and a folder destination.

No assertion here is about durations. "Within the interval plus one poll" is checked by counting:
the state file numbers the polls and records when each started, so an item created before the
start of poll N must have been mirrored by poll N. Waits for something to happen are bounded
(``wait_for``) only so that a broken build fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from historyfs.config import parse_tz
from historyfs.fakeapi import FakeApiServer, Faults, Library
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.s3 import S3Server
from tests.fixtures.s3_proxy import ProxyFaults, S3FaultProxy

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]
KEY = "sk_watch_3e1f"
HANG_GUARD = 60.0  # seconds before a wait is declared a failure (it should take a second or two)


def wait_for(what: str, condition: Callable[[], Any], proc: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the watch exited ({proc.returncode}) before {what}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen")


def state(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


@contextmanager
def watching(dest: str, api: FakeApiServer, key: str, state_file: Path, *extra: str, env: dict[str, str] | None = None, default_state: bool = False) -> Iterator[subprocess.Popen[str]]:
    """`historyfs export DEST --watch ...` running until the block ends (then SIGTERM, then SIGKILL if need be).
    ``state_file`` is passed as --state-file, or (``default_state``) is where the default location must put it."""
    flag = () if default_state else ("--state-file", str(state_file))
    cmd = [sys.executable, "-m", "historyfs", "export", dest, "--tz", "UTC", "-q", *flag, *extra]
    full_env = {**os.environ, **(env or {}), "ELEVENLABS_API_KEY": key, "HISTORYFS_API_URL": api.base_url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the first full reconcile", lambda: state(state_file).get("polls", 0) >= 1, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


# -- what a destination holds -------------------------------------------------------------------


def expected(lib: Library) -> dict[str, bytes]:
    """key -> bytes of a full mirror (layout in UTC)."""
    items = [HistoryItem.from_json(d) for d in lib.items()]
    places = Layout(parse_tz("UTC")).place_all(items)
    out = {}
    for item in items:
        out[places[item.history_item_id].relpath("by-voice")] = lib.audio_bytes(item.history_item_id)
        out[places[item.history_item_id].relpath("by-voice", "sidecar")] = item.to_json_bytes()
    return out


def folder_objects(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def bucket_objects(client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", ()):
            rel = o["Key"][len(prefix) + 1 :]
            if not rel.startswith("."):
                out[rel] = bytes(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
    return out


def holds(objects: dict[str, bytes], lib: Library, item_id: str) -> bool:
    """Both objects of the item are there, with exactly the right bytes."""
    want = {k: v for k, v in expected(lib).items() if f"[{item_id[:8]}" in k}
    return len(want) == 2 and all(objects.get(k) == v for k, v in want.items())


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]


# -- servers ------------------------------------------------------------------------------------


@pytest.fixture
def adding_api() -> Iterator[FakeApiServer]:
    """A server that adds an item every second by itself."""
    with FakeApiServer(items=4, seed=31, api_key=KEY, add_every=1.0) as srv:
        yield srv


@pytest.fixture
def quiet_api() -> Iterator[tuple[FakeApiServer, Library]]:
    """A server of this test alone (faults are server-wide), six small items behind KEY."""
    with FakeApiServer(items=0, seed=32, api_key="watch-unused") as srv:
        lib = srv.add_tenant(KEY, items=0, seed=32)
        for i in range(6):
            lib.add_item(audio_size=random.Random(i).randint(4_000, 30_000), date_unix=1_790_000_000 - i * 90_000)
        yield srv, lib


def _new_item(lib: Library, **kw: Any) -> str:
    return str(lib.add_item(text=f"new clip {time.time()}", **kw)["history_item_id"])


# -- tests --------------------------------------------------------------------------------------


def test_each_new_item_is_mirrored_by_the_first_poll_after_it_appears(adding_api: FakeApiServer, s3_env: S3Server, s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    lib = adding_api.library
    s3_state, dir_state, folder = tmp_path / "s3.json", tmp_path / "dir.json", tmp_path / "mirror"
    with (
        watching(f"s3://{s3_bucket}/w", adding_api, KEY, s3_state, "--watch", "1", env=s3_env.env),
        watching(str(folder), adding_api, KEY, dir_state, "--watch", "1"),
    ):
        for path in (s3_state, dir_state):
            wait_for("four items mirrored by polls", lambda p=path: len([i for i in state(p).get("recent_items", []) if i["pass"].startswith("poll")]) >= 4)
    # read once both watches stopped: their final state files may name items mirrored after the wait
    in_bucket, in_folder = bucket_objects(s3_client, s3_bucket, "w"), folder_objects(folder)
    for path, objects in ((s3_state, in_bucket), (dir_state, in_folder)):
        doc = state(path)
        starts = {p["n"]: p["at"] for p in doc["recent_polls"]}
        for item in (i for i in doc["recent_items"] if i["pass"].startswith("poll")):
            polled = int(item["pass"].split()[1])
            first_after = min((n for n, at in starts.items() if at >= item["date_unix"] + 1), default=polled)  # date_unix is rounded down
            assert polled <= first_after, (item, starts)  # within the interval plus one poll
            assert holds(objects, lib, item["item_id"])
        assert doc["errors"] == 0 and doc["state"] == "stopped"


def test_an_api_outage_loses_nothing(quiet_api: tuple[FakeApiServer, Library], tmp_path: Path) -> None:
    api, lib = quiet_api
    folder, state_file = tmp_path / "mirror", tmp_path / "state.json"
    with watching(str(folder), api, KEY, state_file, "--watch", "0.3", "--api-deadline", "1") as proc:
        api.set_faults(Faults(outage=True))
        try:
            new = [_new_item(lib), _new_item(lib)]
            wait_for("three failed polls", lambda: state(state_file).get("errors", 0) >= 3, proc)
        finally:
            api.set_faults(Faults())
        wait_for("the new items mirrored", lambda: all(holds(folder_objects(folder), lib, i) for i in new), proc)
        assert state(state_file)["state"] in ("running", "backing-off")
    assert folder_objects(folder) == expected(lib)
    assert api.stats()["resets"] > 0  # the outage was real


def test_a_watch_of_recent_mirrors_a_new_clip_at_the_next_poll(quiet_api: tuple[FakeApiServer, Library], tmp_path: Path) -> None:
    """recent/ is the newest items at each poll, not those of the first reconcile."""
    api, lib = quiet_api
    folder, state_file = tmp_path / "mirror", tmp_path / "state.json"
    with watching(str(folder), api, KEY, state_file, "--watch", "0.3", "--path", "recent") as proc:
        new = _new_item(lib)
        wait_for("the new clip in recent/", lambda: lib.audio_bytes(new) in folder_objects(folder / "recent").values(), proc)
        assert any(i["item_id"] == new and i["pass"].startswith("poll") for i in state(state_file)["recent_items"])


def test_an_s3_outage_loses_nothing(quiet_api: tuple[FakeApiServer, Library], s3_env: S3Server, s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    api, lib = quiet_api
    state_file = tmp_path / "state.json"
    with S3FaultProxy(s3_env.endpoint_url, seed=3) as proxy:
        with watching(f"s3://{s3_bucket}/w", api, KEY, state_file, "--watch", "0.3", "--endpoint-url", proxy.url, env=s3_env.env) as proc:
            proxy.faults = ProxyFaults(reset_rate=1.0)
            try:
                new = [_new_item(lib), _new_item(lib)]
                wait_for("several seconds of refused S3 requests", lambda: proxy.counts["reset"] >= 6, proc)
            finally:
                proxy.faults = ProxyFaults()
            wait_for("the new items mirrored", lambda: all(holds(bucket_objects(s3_client, s3_bucket, "w"), lib, i) for i in new), proc)
    assert bucket_objects(s3_client, s3_bucket, "w") == expected(lib) and open_uploads(s3_client, s3_bucket) == []


def test_sigterm_mid_upload_leaves_no_partial_object_and_the_next_run_completes(quiet_api: tuple[FakeApiServer, Library], s3_env: S3Server, s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    api, lib = quiet_api
    state_file = tmp_path / "state.json"
    with watching(f"s3://{s3_bucket}/w", api, KEY, state_file, "--watch", "0.3", "--multipart-chunk-size", "5M", env=s3_env.env) as proc:
        api.set_faults(Faults(bandwidth=2 * 1024 * 1024))  # the large item takes ~12 s to arrive: longer than the stop grace
        try:
            big = _new_item(lib, audio_size=24 * 1024 * 1024)
            wait_for("a multipart upload in flight", lambda: open_uploads(s3_client, s3_bucket), proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            api.set_faults(Faults())
    found = bucket_objects(s3_client, s3_bucket, "w")
    assert all(expected(lib).get(k) == v for k, v in found.items())  # nothing partial: what is there is whole
    assert open_uploads(s3_client, s3_bucket) == [] and state(state_file)["state"] == "stopped"
    env = {**os.environ, **s3_env.env, "ELEVENLABS_API_KEY": KEY, "HISTORYFS_API_URL": api.base_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "historyfs", "export", f"s3://{s3_bucket}/w", "--tz", "UTC", "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert bucket_objects(s3_client, s3_bucket, "w") == expected(lib) and holds(found | bucket_objects(s3_client, s3_bucket, "w"), lib, big)


def test_watch_delete_removes_only_at_a_full_reconcile_and_within_the_guards(quiet_api: tuple[FakeApiServer, Library], tmp_path: Path) -> None:
    api, lib = quiet_api
    folder, state_file = tmp_path / "mirror", tmp_path / "state.json"
    items = [d["history_item_id"] for d in lib.items()]
    with watching(str(folder), api, KEY, state_file, "--watch", "0.2", "--full-resync", "3", "--delete", "--max-delete", "4") as proc:
        doc = wait_for("a second full reconcile, over", lambda: (d := state(state_file)).get("full_reconciles", 0) >= 2 and d["phase"] != "full" and d, proc)
        fulls, polls = doc["full_reconciles"], doc["polls"]  # no full reconcile runs now: any later one counts above `fulls`
        mirrored = {k: v for k, v in folder_objects(folder).items() if f"[{items[0][:8]}" in k}
        lib.delete(items[0])
        wait_for("two more polls", lambda: state(state_file)["polls"] >= polls + 2, proc)
        present = len(mirrored) == 2 and all(folder_objects(folder).get(k) == v for k, v in mirrored.items())
        assert present or state(state_file)["full_reconciles"] > fulls  # polls never delete: only a full reconcile may
        wait_for("the deleted item gone after a full reconcile", lambda: not any(f"[{items[0][:8]}" in k for k in folder_objects(folder)), proc)
        assert state(state_file)["full_reconciles"] > fulls
        for item_id in items[1:4]:
            lib.delete(item_id)
        refused = wait_for("a full reconcile refusing 6 deletes", lambda: "refusing to delete 6 objects" in json.dumps(state(state_file).get("last_error")), proc)
        assert refused and all(any(f"[{i[:8]}" in k for k in folder_objects(folder)) for i in items[1:4])
        assert proc.poll() is None  # a refusal does not end the watch


def test_bad_input_ends_the_watch_with_one_line(quiet_api: tuple[FakeApiServer, Library], tmp_path: Path) -> None:
    api, _ = quiet_api
    env = {**os.environ, "ELEVENLABS_API_KEY": KEY, "HISTORYFS_API_URL": api.base_url, "PYTHONPATH": str(ROOT)}
    for args, message in ((("--path", "by-voice/Nobdy"), "no folder by-voice/Nobdy"), (("--dry-run",), "cannot be combined with --dry-run"), (("--full-resync", "-1"), "bad --full-resync")):
        r = subprocess.run([sys.executable, "-m", "historyfs", "export", str(tmp_path / "m"), "--watch", "1", "--state-file", str(tmp_path / "s.json"), *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_state_file_is_private_and_in_the_cache_folder(quiet_api: tuple[FakeApiServer, Library], tmp_path: Path) -> None:
    from exporters.watch_state import default_path, read_all

    api, lib = quiet_api
    dest, cache = str(tmp_path / "m"), tmp_path / "xdg"
    path = default_path(dest, cache / "historyfs")
    with watching(dest, api, KEY, path, "--watch", "0.5", env={"XDG_CACHE_HOME": str(cache)}, default_state=True):
        doc = state(path)
        assert [d["destination"] for d in read_all(cache / "historyfs")] == [dest]
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert doc["destination"] == dest and doc["items_mirrored"] == len(lib.items()) and doc["pid"] > 0 and doc["state"] == "running"
    assert state(path)["state"] == "stopped"
    assert KEY not in path.read_text()
