"""`historyfs export --path` of the views beyond by-date/by-voice: by-model/<model>, recent, search/<words>
select what the mount shows there, under the mount's names. Against the fake API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.cli import main
from historyfs.client import HistoryClient
from historyfs.layout import Layout, Placement
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant

UTC = "UTC"


def _export(t: FakeTenant, dest: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setenv("ELEVENLABS_API_KEY", t.api_key)
    monkeypatch.setenv("HISTORYFS_API_URL", t.base_url)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(["export", str(dest), "--tz", UTC, "--quiet", *argv])
    finally:
        root.handlers[:], root.level = handlers, level


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != ".historyfs-manifest.json"}


def _expected(t: FakeTenant, ids: list[str], where: str) -> dict[str, bytes]:
    items = [HistoryItem.from_json(d) for d in t.library.items()]
    places: dict[str, Placement] = Layout(ZoneInfo(UTC)).place_all(items)
    by_id = {i.history_item_id: i for i in items}
    out: dict[str, bytes] = {}
    for item_id in ids:
        out[places[item_id].relpath(where)] = t.library.audio_bytes(item_id)
        out[places[item_id].relpath(where, "sidecar")] = by_id[item_id].to_json_bytes()
    return out


def test_export_path_search_selects_what_the_api_finds(fake_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    t = fake_tenant(items=40, seed=71)
    with HistoryClient(t.api_key, t.base_url) as client:
        ids = [i.history_item_id for i in client.iter_items(search="welcome")]
    assert 0 < len(ids) < 40
    assert _export(t, tmp_path / "out", monkeypatch, "--path", "search/welcome") == 0
    assert _files(tmp_path / "out") == _expected(t, ids, "search/welcome")


def test_export_path_by_model_and_recent(fake_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    t = fake_tenant(items=40, seed=72)
    items = t.library.items()
    model = max({d["model_id"] for d in items}, key=lambda m: sum(d["model_id"] == m for d in items))
    of_model = [d["history_item_id"] for d in items if d["model_id"] == model]
    assert 0 < len(of_model) < 40
    assert _export(t, tmp_path / "model", monkeypatch, "--path", f"by-model/{model}") == 0
    assert _files(tmp_path / "model") == _expected(t, of_model, "by-model")
    assert _export(t, tmp_path / "recent", monkeypatch, "--path", "recent") == 0
    assert _files(tmp_path / "recent") == _expected(t, [d["history_item_id"] for d in items], "recent")  # 40 < 100


def test_export_path_of_a_probe_name_is_refused_before_anything(fake_tenant: Callable[..., FakeTenant], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    t = fake_tenant(items=5, seed=73)
    assert _export(t, tmp_path / "out", monkeypatch, "--path", "search/.hidden") == 1
    err = capsys.readouterr().err
    assert "search" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == {}
