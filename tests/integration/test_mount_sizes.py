"""Real mounts, the size contract: every reader gets exact bytes, including tools that trust `stat`.

Tools nobody here wrote (tar, rclone, file, find, ls, test) run on COLD mounts and their results
are compared with the bytes the API serves. Also: what a listing may and may not cost, what the
kernel is told when the mount learns something (lazy sizes, deletes, new and vanished items).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]
UTC = ZoneInfo("UTC")
RCLONE = shutil.which("rclone") or str(Path(os.sys.executable).parent / "rclone")


def _places(t: FakeTenant) -> dict[str, HistoryItem]:
    """relpath (by-voice and by-date, audio) -> item."""
    items = [HistoryItem.from_json(d) for d in t.library.items()]
    places = Layout(UTC).place_all(items)
    return {places[i.history_item_id].relpath(v): i for i in items for v in ("by-voice", "by-date")}


def _stats(m: Mount) -> dict:  # type: ignore[type-arg]
    return json.loads((m.path / ".historyfs" / "stats.json").read_text())  # type: ignore[no-any-return]


def _audio_requests(m: Mount) -> int:
    return sum(_stats(m)["api"]["calls"].get("audio", {}).values())


@pytest.fixture(params=["content-length", "chunked"])
def cold(request: pytest.FixtureRequest, fake_tenant: Callable[..., FakeTenant], fake_faults: FakeApiServer,
         tmp_path: Path) -> Iterator[tuple[Mount, FakeTenant]]:
    """A cold mount of a fresh tenant; audio sent with Content-Length, or chunked without."""
    fake_faults.set_faults(Faults(chunked_audio=request.param == "chunked"))
    t = fake_tenant(items=30, seed=41)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        yield m, t


def test_tar_of_a_cold_view_holds_every_clip_exactly(cold: tuple[Mount, FakeTenant], tmp_path: Path) -> None:
    m, t = cold
    out = tmp_path / "out.tar"
    subprocess.run(["tar", "-cf", str(out), "-C", str(m.path), "by-date"], check=True)
    expected = {rel: t.library.audio_bytes(i.history_item_id) for rel, i in _places(t).items() if rel.startswith("by-date")}
    with tarfile.open(out) as tar:
        got = {ti.name: tar.extractfile(ti).read() for ti in tar.getmembers() if ti.isfile() and not ti.name.endswith(".json")}  # type: ignore[union-attr]
    assert got.keys() == expected.keys()
    assert [rel for rel in expected if got[rel] != expected[rel]] == []


def test_rclone_copy_with_one_try_to_a_folder_is_exact(cold: tuple[Mount, FakeTenant], tmp_path: Path) -> None:
    m, t = cold
    dest = tmp_path / "dest"
    done = subprocess.run([RCLONE, "copy", "--retries", "1", "--low-level-retries", "1", str(m.path / "by-voice"), str(dest)],
                          capture_output=True, text=True, env={**os.environ, "RCLONE_CONFIG": "/dev/null"})
    assert done.returncode == 0, done.stderr[-2000:]
    for rel, item in _places(t).items():
        if rel.startswith("by-voice/"):
            assert (dest / rel.split("/", 1)[1]).read_bytes() == t.library.audio_bytes(item.history_item_id), rel


@pytest.mark.s3
def test_rclone_copy_with_one_try_to_s3_is_exact(cold: tuple[Mount, FakeTenant], s3_env, s3_bucket: str, s3_client) -> None:  # type: ignore[no-untyped-def]
    m, t = cold
    env = {**os.environ, "RCLONE_CONFIG": "/dev/null", "RCLONE_CONFIG_TESTS3_TYPE": "s3",
           "RCLONE_CONFIG_TESTS3_PROVIDER": "Other", "RCLONE_CONFIG_TESTS3_ENDPOINT": s3_env.endpoint_url,
           "RCLONE_CONFIG_TESTS3_ACCESS_KEY_ID": s3_env.env["AWS_ACCESS_KEY_ID"],
           "RCLONE_CONFIG_TESTS3_SECRET_ACCESS_KEY": s3_env.env["AWS_SECRET_ACCESS_KEY"],
           "RCLONE_CONFIG_TESTS3_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG_TESTS3_REGION": "us-east-1"}
    done = subprocess.run([RCLONE, "copy", "--retries", "1", "--low-level-retries", "1", str(m.path / "by-date"),
                           f"tests3:{s3_bucket}/copy"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for rel, item in _places(t).items():
        if rel.startswith("by-date/"):
            key = "copy/" + rel.split("/", 1)[1]
            body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
            assert body == t.library.audio_bytes(item.history_item_id), key


def test_file_calls_a_cold_clip_audio(cold: tuple[Mount, FakeTenant]) -> None:
    m, t = cold
    rel = next(r for r, i in sorted(_places(t).items()) if i.content_type == "audio/mpeg")
    described = subprocess.run(["file", "-b", str(m.path / rel)], capture_output=True, text=True, check=True).stdout
    assert "audio" in described.lower() or "MPEG" in described, described


def test_find_over_a_cold_mount_downloads_nothing(cold: tuple[Mount, FakeTenant]) -> None:
    m, t = cold
    found = subprocess.run(["find", str(m.path), "-type", "f"], capture_output=True, text=True, check=True).stdout
    views = 4  # by-date, by-model, by-voice, and recent/ (all 30 items: fewer than its 100)
    assert len([f for f in found.splitlines() if f.endswith(".mp3") or f.endswith(".wav")]) == views * len(t.library.items())
    stats = _stats(m)
    assert stats["bytes_fetched"] == 0 and _audio_requests(m) == 0


def test_ls_l_of_a_cold_folder_learns_every_size_once(cold: tuple[Mount, FakeTenant]) -> None:
    m, t = cold
    voice = max((p for p in (m.path / "by-voice").iterdir()), key=lambda p: len(list(p.rglob("*.json"))))
    folder = voice / sorted(os.listdir(voice))[0]
    clips = {p.name for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"}
    listing = subprocess.run(["ls", "-lR", str(folder)], capture_output=True, text=True, check=True).stdout
    sizes = {line.split()[-1]: int(line.split()[4]) for line in listing.splitlines() if line.startswith("-") and
             not line.endswith(".json")} if all(" " not in c for c in clips) else None
    by_rel = _places(t)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".json":
            item = by_rel[str(path.relative_to(m.path))]
            assert path.stat().st_size == len(t.library.audio_bytes(item.history_item_id)), path
    assert _audio_requests(m) == len(clips)  # each clip fetched once: learning a size is the download
    assert sizes is None or 0 not in sizes.values()


def test_with_the_api_stopped_an_unknown_size_is_eio_and_a_known_one_answers(
        fake_tenant: Callable[..., FakeTenant], fake_faults: FakeApiServer, tmp_path: Path) -> None:
    t = fake_tenant(items=8, seed=42)
    (tmp_path / "mnt").mkdir()
    known_rel, unknown_rel = sorted(r for r in _places(t) if r.startswith("by-voice"))[:2]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--api-deadline", "2") as m:
        known = m.path / known_rel
        size = known.stat().st_size
        fake_faults.set_faults(Faults(outage=True))
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            os.stat(m.path / unknown_rel)
        assert info.value.errno == errno.EIO and time.monotonic() - started < 10
        assert known.stat().st_size == size  # learned before: answers without the API


def test_lazy_sizes_are_zero_until_opened_then_exact_everywhere_at_once(fake_tenant: Callable[..., FakeTenant],
                                                                          tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=43)
    (tmp_path / "mnt").mkdir()
    places = _places(t)
    rel, item = sorted((r, i) for r, i in places.items() if r.startswith("by-voice"))[0]
    other = next(r for r, i in places.items() if i.history_item_id == item.history_item_id and r.startswith("by-date"))
    data = t.library.audio_bytes(item.history_item_id)
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--sizes", "lazy") as m:
        assert os.stat(m.path / rel).st_size == 0 and os.stat(m.path / other).st_size == 0  # the kernel keeps these
        assert _audio_requests(m) == 0
        with open(m.path / rel, "rb") as f:
            assert os.fstat(f.fileno()).st_size == len(data)  # the opening process
            probe = [os.sys.executable, "-c", "import os, sys; print(os.stat(sys.argv[1]).st_size, os.stat(sys.argv[2]).st_size)",
                     str(m.path / rel), str(m.path / other)]
            assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split() == [str(len(data))] * 2
            assert f.read() == data


def test_after_rm_neither_view_shows_the_clip(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=44)
    (tmp_path / "mnt").mkdir()
    item = HistoryItem.from_json(t.library.items()[0])
    place = Layout(UTC).place_all([HistoryItem.from_json(d) for d in t.library.items()])[item.history_item_id]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete") as m:
        paths = [m.path / place.relpath(v) for v in ("by-voice", "by-date")]
        assert all(p.stat().st_size > 0 for p in paths)  # both names now cached by the kernel
        paths[0].unlink()
        for p in paths:
            assert not p.exists(), p
            assert p.name not in os.listdir(p.parent) if p.parent.exists() else True
    assert item.history_item_id not in {d["history_item_id"] for d in t.library.items()}


def test_an_item_added_on_the_server_appears_after_one_refresh(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=45)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--refresh", "1") as m:
        before = {p.name for p in (m.path / "by-date").iterdir()}
        root_mtime = (m.path / "by-date").stat().st_mtime  # cached by the kernel from here on
        new = HistoryItem.from_json(t.library.add_item())
        rel = Layout(UTC).place_all([HistoryItem.from_json(d) for d in t.library.items()])[new.history_item_id].relpath("by-date")
        deadline = time.monotonic() + 15
        while not (m.path / rel).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (m.path / rel).stat().st_size == len(t.library.audio_bytes(new.history_item_id))
        assert (m.path / rel).stat().st_mtime == new.date_unix
        assert (m.path / "by-date").stat().st_mtime == new.date_unix > root_mtime  # the kernel was told
        assert Path(rel).parts[1] in {p.name for p in (m.path / "by-date").iterdir()} | before


def test_an_item_deleted_on_the_server_disappears_after_a_full_resync(fake_tenant: Callable[..., FakeTenant],
                                                                       tmp_path: Path) -> None:
    t = fake_tenant(items=6, seed=46)
    (tmp_path / "mnt").mkdir()
    rel, item = sorted((r, i) for r, i in _places(t).items() if r.startswith("by-voice"))[0]
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--full-resync", "1") as m:
        path = m.path / rel
        assert path.stat().st_size > 0  # cached by the kernel
        t.library.delete(item.history_item_id)
        deadline = time.monotonic() + 15
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not path.exists()
        assert path.name not in (os.listdir(path.parent) if path.parent.exists() else [])


def test_ls_l_of_a_listed_folder_of_known_clips_sends_no_getattr(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=0, seed=47)
    for n in range(50):  # one voice, one day: a folder of 50 clips
        t.library.add_item(voice_id="oneVoice0000000000", voice_name="One", date_unix=1_790_000_000 + n, audio_size=20_000)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        folders = [p for p in (m.path / "by-voice").rglob("*") if p.is_dir() and any(f.suffix == ".json" for f in p.iterdir())]
        assert len(folders) == 1 and len(list(folders[0].glob("*.json"))) == 50
        subprocess.run(["ls", "-l", str(folders[0])], capture_output=True, check=True)  # learns the 50 sizes
        before = _stats(m)["fuse_calls"].get("getattr", 0)
        listing = subprocess.run(["ls", "-l", str(folders[0])], capture_output=True, text=True, check=True).stdout
        assert _stats(m)["fuse_calls"].get("getattr", 0) == before
        assert len([line for line in listing.splitlines() if line.startswith("-")]) == 100


def test_clips_are_not_executable_and_rm_r_of_a_day_with_wav_exits_0(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=12, seed=48)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete", "--formats", "native,wav") as m:
        clip = next((m.path / "by-voice").rglob("*.mp3"))
        assert subprocess.run(["test", "-x", str(clip)]).returncode != 0
        assert not os.access(clip, os.X_OK)
        executable = subprocess.run(["find", str(m.path), "-type", "f", "-executable"], capture_output=True, text=True).stdout
        assert executable == ""
        day = max((p for p in (m.path / "by-date").glob("*/*")), key=lambda p: len(list(p.rglob("*.json"))))
        in_day = {json.loads(p.read_text())["history_item_id"] for p in day.rglob("*.json")}
        done = subprocess.run(["rm", "-r", str(day)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert not day.exists()
    left = {d["history_item_id"] for d in t.library.items()}
    assert in_day and not (in_day & left) and len(left) == 12 - len(in_day)


@pytest.mark.skipif(os.geteuid() != 0, reason="raising the kernel's read-ahead needs root (sysfs)")
def test_reads_reach_the_mount_in_requests_of_up_to_1_mib(fake_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    t = fake_tenant(items=0, seed=49)
    item = t.library.add_item(audio_size=6_000_000)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        dev = os.stat(m.path).st_dev
        knob, deadline = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"), time.monotonic() + 5
        while knob.read_text().strip() != "1024" and time.monotonic() < deadline:  # set just after the mount is live
            time.sleep(0.05)
        assert knob.read_text().strip() == "1024"
        clip = next((m.path / "by-date").rglob("*.mp3"))
        assert clip.read_bytes() == t.library.audio_bytes(item["history_item_id"])
        reads = _stats(m)["fuse_calls"]["read"] - 1  # minus our stats.json
        assert reads <= 2 * (6_000_000 // (1 << 20) + 1)  # 128 KiB requests would be 46


def test_where_the_api_answers_a_length_request_ls_l_downloads_nothing(fake_tenant: Callable[..., FakeTenant],
                                                                       fake_faults: FakeApiServer, tmp_path: Path) -> None:
    fake_faults.set_faults(Faults(head=True))  # the real API answers HEAD with 405: the other tests cover that path
    t = fake_tenant(items=20, seed=50)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        subprocess.run(["ls", "-lR", str(m.path / "by-voice")], capture_output=True, check=True)
        for rel, item in _places(t).items():
            if rel.startswith("by-voice/"):
                assert (m.path / rel).stat().st_size == len(t.library.audio_bytes(item.history_item_id)), rel
        calls = _stats(m)["api"]["calls"]
        assert "audio" not in calls and sum(calls["audio_head"].values()) == len(t.library.items())
        assert _stats(m)["bytes_fetched"] == 0 and _stats(m)["size_probes"] == len(t.library.items())
