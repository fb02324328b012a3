"""`historyfs export` into a folder, end to end against the fake API on loopback: selection,
layout, incremental re-runs, --delete, --dry-run, wav, bad input, and the Python API.

Each test gets its own tenant (an isolated library behind its own key) on one shared server.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from exporters import ExportSummary, export
from exporters.progress import Snapshot
from historyfs.cli import main
from historyfs.config import parse_tz
from historyfs.fakeapi import FakeApiServer, Library
from historyfs.layout import Layout, Placement
from historyfs.models import HistoryItem

_keys = itertools.count(1)
TZ = "UTC"


@dataclass
class Tenant:
    """One isolated library and the key that reaches it."""

    server: FakeApiServer
    lib: Library
    key: str

    def items(self) -> list[HistoryItem]:
        return [HistoryItem.from_json(d) for d in self.lib.items()]

    def placements(self) -> dict[str, Placement]:
        return Layout(parse_tz(TZ)).place_all(self.items())

    def requests(self, endpoint: str) -> list[dict[str, Any]]:
        return [e for e in self.lib.stats.entries() if e["endpoint"] == endpoint]


@pytest.fixture(scope="module")
def api_server() -> Iterator[FakeApiServer]:
    with FakeApiServer(items=5, seed=1, api_key="export-base") as srv:
        yield srv


@pytest.fixture
def tenant(api_server: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    key = f"export-key-{next(_keys)}"
    lib = api_server.add_tenant(key, items=24, seed=7)
    monkeypatch.setenv("ELEVENLABS_API_KEY", key)
    monkeypatch.setenv("HISTORYFS_API_URL", api_server.base_url)
    return Tenant(api_server, lib, key)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `historyfs ARGS` in-process; the root logger is restored afterwards."""

    def run(*argv: str) -> Result:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            code = main(list(argv))
        finally:
            root.handlers[:], root.level = handlers, level
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def expected_files(t: Tenant, items: list[HistoryItem], view: str = "by-voice", wav: bool = False) -> dict[str, bytes]:
    places = t.placements()
    out: dict[str, bytes] = {}
    for item in items:
        p = places[item.history_item_id]
        audio = t.lib.wav_bytes(item.history_item_id) if wav else t.lib.audio_bytes(item.history_item_id)
        out[p.relpath(view, "wav" if wav else "audio")] = audio
        out[p.relpath(view, "sidecar")] = item.to_json_bytes()
    return out


def exported(root: Path) -> dict[str, bytes]:
    files = files_under(root)
    files.pop(".historyfs-manifest.json", None)
    return files


# -- whole library, re-runs -------------------------------------------------------------


def test_export_everything_mirrors_the_layout(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    r = cli("export", str(dest), "--tz", TZ, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["selected"] == summary["uploaded"] == 24 and summary["failed"] == 0
    assert exported(dest) == expected_files(tenant, tenant.items())
    assert summary["bytes"] == sum(len(tenant.lib.audio_bytes(i.history_item_id)) for i in tenant.items())


def test_rerun_transfers_nothing_and_new_items_only_are_added(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    audio_calls = len(tenant.requests("audio"))
    again = cli("export", str(dest), "--tz", TZ, "--json")
    assert json.loads(again.out) | {"seconds": 0} == {**json.loads(again.out), "uploaded": 0, "skipped": 24, "seconds": 0}
    assert len(tenant.requests("audio")) == audio_calls
    tenant.lib.add_item(text="A brand new clip")
    third = json.loads(cli("export", str(dest), "--tz", TZ, "--json").out)
    assert (third["uploaded"], third["skipped"]) == (1, 24)
    assert len(tenant.requests("audio")) == audio_calls + 1
    assert exported(dest) == expected_files(tenant, tenant.items())


def test_file_url_is_the_same_as_a_path(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    r = cli("export", f"file://{tmp_path}/viaurl", "--tz", TZ, "--voice", tenant.items()[0].voice_id or "")
    assert r.code == 0, r.err
    assert exported(tmp_path / "viaurl")
    assert r.out.startswith("export: ")


# -- selection ---------------------------------------------------------------------------


def _voice_ids_by_name(t: Tenant) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for i in t.items():
        if i.voice_id and i.voice_name:
            names.setdefault(i.voice_name.casefold(), set()).add(i.voice_id)
    return names


def _voiced(t: Tenant) -> HistoryItem:
    """An item of a voice whose name no other voice shares."""
    names = _voice_ids_by_name(t)
    return next(i for i in t.items() if i.voice_id and i.voice_name and len(names[i.voice_name.casefold()]) == 1)


def test_voice_by_name_costs_no_second_listing(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    """The full listing a run needs anyway (for the layout) answers every filter but --search."""
    voice = _voiced(tenant)
    assert cli("export", str(tmp_path / "o"), "--tz", TZ, "--voice", voice.voice_name.upper()).code == 0  # type: ignore[union-attr]
    want = [i for i in tenant.items() if i.voice_id == voice.voice_id]
    assert exported(tmp_path / "o") == expected_files(tenant, want)
    assert len(tenant.requests("list")) == 1


def test_a_name_shared_by_several_voices_selects_them_all(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    tenant.lib.add_item(text="one", voice_id="SharedNameVoiceAAAA1", voice_name="Twin")
    tenant.lib.add_item(text="two", voice_id="SharedNameVoiceBBBB2", voice_name="twin")
    assert cli("export", str(tmp_path / "o"), "--tz", TZ, "--voice", "Twin").code == 0
    want = [i for i in tenant.items() if i.text in ("one", "two")]
    assert len(want) == 2 and exported(tmp_path / "o") == expected_files(tenant, want)


def test_several_voices_are_or_ed_client_side(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    ids = sorted({i.voice_id for i in tenant.items() if i.voice_id})[:2]
    assert cli("export", str(tmp_path / "o"), "--tz", TZ, "--voice", ids[0], "--voice", ids[1]).code == 0
    want = [i for i in tenant.items() if i.voice_id in ids]
    assert exported(tmp_path / "o") == expected_files(tenant, want)
    assert not any("voice_id=" in e["path"] for e in tenant.requests("list"))


def test_model_source_and_search_filters(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    tenant.lib.add_item(text="zebra crossing at dawn", model_id="eleven_turbo_v2", source="STS")
    tenant.lib.add_item(text="zebra in the rain", model_id="eleven_multilingual_v2", source="STS")
    tenant.lib.add_item(text="zebra again", model_id="eleven_turbo_v2", source="TTS")
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, "--search", "zebra", "--model", "eleven_turbo_v2", "--source", "STS")
    assert r.code == 0, r.err
    want = [i for i in tenant.items() if i.text == "zebra crossing at dawn"]
    assert exported(tmp_path / "o") == expected_files(tenant, want)
    (listing,) = [e["path"] for e in tenant.requests("list") if "search=" in e["path"]]
    assert "model_id=eleven_turbo_v2" in listing and "source=STS" in listing


def test_since_until_whole_days_in_the_time_zone(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    base = 1_790_000_000 - 1_790_000_000 % 86400  # a UTC midnight
    for offset in (-1, 0, 86399, 86400, 2 * 86400):
        tenant.lib.add_item(text=f"dated {offset}", date_unix=base + offset)
    day = datetime.fromtimestamp(base, timezone.utc).strftime("%Y-%m-%d")
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, "--since", day, "--until", day)
    assert r.code == 0, r.err
    want = [i for i in tenant.items() if base <= i.date_unix < base + 86400]
    assert {i.text for i in want} == {"dated 0", "dated 86399"}
    assert exported(tmp_path / "o") == expected_files(tenant, want)


def test_path_selection_combined_with_a_filter(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    voice = _voiced(tenant)
    place = tenant.placements()[voice.history_item_id]
    folder = f"by-date/{place.month}"
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, "--path", folder, "--voice", voice.voice_id or "")
    assert r.code == 0, r.err
    places = tenant.placements()
    want = [i for i in tenant.items() if i.voice_id == voice.voice_id and places[i.history_item_id].month == place.month]
    assert want and exported(tmp_path / "o") == expected_files(tenant, want, view="by-date")


# -- delete, dry run, wav ---------------------------------------------------------------


def test_delete_removes_only_what_the_exporter_wrote(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "o"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    (dest / "by-voice" / "my notes.txt").write_text("keep me")
    gone = tenant.items()[3]
    tenant.lib.delete(gone.history_item_id)
    assert cli("export", str(dest), "--tz", TZ).code == 0
    assert len(exported(dest)) == 2 * 24 + 1  # without --delete nothing is removed
    r = cli("export", str(dest), "--tz", TZ, "--delete", "--json")
    assert json.loads(r.out)["deleted"] == 2
    assert exported(dest) == {**expected_files(tenant, tenant.items()), "by-voice/my notes.txt": b"keep me"}


def test_delete_is_skipped_when_an_item_failed(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "o"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    before = exported(dest)
    tenant.lib.delete(tenant.items()[0].history_item_id)
    new = HistoryItem.from_json(tenant.lib.add_item(text="this one cannot be written"))
    (dest / tenant.placements()[new.history_item_id].relpath("by-voice")).mkdir(parents=True)  # a folder in the way
    r = cli("export", str(dest), "--tz", TZ, "--delete", "--json")
    summary = json.loads(r.out)
    assert r.code == 1 and (summary["uploaded"], summary["failed"], summary["deleted"]) == (0, 1, 0)
    assert "this one cannot" in r.err or summary["errors"]
    assert exported(dest) == before
    r = cli("export", str(dest), "--tz", TZ, "--delete")
    assert r.code == 1
    assert [ln.split(":")[1].strip() for ln in r.err.strip().splitlines()] == ["failed", "2 objects not deleted because 1 items failed"]


def test_dry_run_prints_the_plan_and_changes_nothing(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "o"
    r = cli("export", str(dest), "--tz", TZ, "--dry-run")
    assert r.code == 0 and not dest.exists()
    lines = r.out.splitlines()
    assert len([ln for ln in lines if ln.startswith("upload ")]) == 24
    assert lines[-1] == "plan: 24 selected, 24 to upload, 0 up to date, 0 to delete"
    assert tenant.requests("audio") == []
    assert cli("export", str(dest), "--tz", TZ).code == 0
    gone = tenant.items()[0]
    tenant.lib.delete(gone.history_item_id)
    snapshot = files_under(dest)
    r = cli("export", str(dest), "--tz", TZ, "--dry-run", "--delete")
    assert files_under(dest) == snapshot
    assert sorted(ln for ln in r.out.splitlines() if ln.startswith("delete ")) == sorted(
        f"delete {k}" for k in exported(dest) if gone.history_item_id[:8] in k
    )


def test_wav_format(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    voice = _voiced(tenant)
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, "--voice", voice.voice_id or "", "--format", "wav")
    assert r.code == 0, r.err
    want = [i for i in tenant.items() if i.voice_id == voice.voice_id]
    assert exported(tmp_path / "o") == expected_files(tenant, want, wav=True)
    assert all(f.endswith((".wav", ".json")) for f in exported(tmp_path / "o"))


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch://x/y",), "unknown destination scheme 'nosuch'"),
        (("s3:/bucket",), "bad destination"),
        (("s3://",), "bad S3 destination"),
        (("{dest}", "--since", "2026-13-01"), "bad date for --since"),
        (("{dest}", "--until", "yesterday"), "bad date for --until"),
        (("{dest}", "--since", "2026-11-02", "--until", "2026-11-01"), "is not before"),
        (("{dest}", "--path", "by-voice/Rachel/November"), "not a month folder"),
        (("{dest}", "--path", "elsewhere/x"), "must start with"),
        (("{dest}", "--voice", "Nobody Has This Voice"), "no voice named"),
        (("{dest}", "--tz", "Mars/Olympus"), "unknown time zone"),
        (("{dest}", "--jobs", "0"), "bad --jobs"),
    ],
)
def test_bad_input_is_one_line_and_transfers_nothing(tenant: Tenant, cli: Any, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    dest = tmp_path / "o"
    r = cli("export", *(a.format(dest=dest) for a in args))
    assert r.code != 0
    assert len(r.err.strip().splitlines()) == 1 and message in r.err and "Traceback" not in r.err
    assert not dest.exists() and tenant.requests("audio") == []


def test_missing_api_key_is_one_line(tenant: Tenant, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY")
    r = cli("export", str(tmp_path / "o"))
    assert r.code == 1 and "no API key" in r.err and len(r.err.strip().splitlines()) == 1


def test_wrong_api_key_is_one_line_without_the_key(tenant: Tenant, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "wrong-secret-key-123")
    r = cli("export", str(tmp_path / "o"))
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1
    assert "wrong-secret-key-123" not in r.err + r.out and not (tmp_path / "o").exists()


def test_destination_that_is_a_file_is_refused(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    r = cli("export", str(tmp_path / "f" / "sub"))
    assert r.code == 1 and "not a folder" in r.err


# -- Python API ----------------------------------------------------------------------------


def test_python_api_with_progress_callback(tenant: Tenant, tmp_path: Path) -> None:
    seen: list[Snapshot] = []
    voice = _voiced(tenant)
    summary = export(str(tmp_path / "o"), api_key=tenant.key, api_url=tenant.server.base_url, voices=voice.voice_name, tz=TZ, jobs=3, progress=seen.append)
    assert isinstance(summary, ExportSummary)
    n = len([i for i in tenant.items() if i.voice_name == voice.voice_name])
    assert summary.uploaded == summary.selected == n
    assert seen[-1].items_done == n and seen[-1].bytes_done >= summary.bytes
    assert [s.items_done for s in seen] == sorted(s.items_done for s in seen)


def test_cache_dir_blobs_are_used_instead_of_the_api(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    from historyfs.cache import BlobCache

    voice = _voiced(tenant)
    want = [i for i in tenant.items() if i.voice_id == voice.voice_id]
    cached = want[0]
    cache = BlobCache(tmp_path / "cache")
    try:
        w = cache.writer(f"{cached.history_item_id}.mp3")
        w.write(tenant.lib.audio_bytes(cached.history_item_id))
        w.commit()
    finally:
        cache.close()
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, "--voice", voice.voice_id or "", "--cache-dir", str(tmp_path / "cache"))
    assert r.code == 0, r.err
    assert exported(tmp_path / "o") == expected_files(tenant, want)
    fetched = [e["path"] for e in tenant.requests("audio")]
    assert len(fetched) == len(want) - 1 and not any(cached.history_item_id in p for p in fetched)
