"""Export guards end to end (folder destination, fake API): a selection that names nothing is an
error before any transfer, and --delete never empties a mirror from an empty selection nor removes
more than --max-delete objects; a refusal is one line, exit 1, nothing deleted, uploads kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from historyfs.fakeapi import FakeApiServer
from historyfs.models import HistoryItem
from tests.integration.test_export_cli import TZ, Tenant, api_server, cli, expected_files, exported, files_under, tenant  # noqa: F401 - fixtures

MANIFEST = ".historyfs-manifest.json"


def _rachel(t: Tenant) -> HistoryItem:
    return HistoryItem.from_json(t.lib.add_item(text="Rachel's clip", voice_id="21m00Tcm4TlvDq8ikWAM", voice_name="Rachel"))


def _one_error_line(r: Any, *fragments: str) -> None:
    assert r.code == 1, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    assert all(f in lines[0] for f in fragments), lines[0]


def _recorded(dest: Path) -> dict[str, Any]:
    return dict(json.loads((dest / MANIFEST).read_text())["objects"])


# -- a selection that names nothing -------------------------------------------------------------


def test_a_typo_in_path_is_an_error_before_any_transfer_and_deletes_nothing(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    _rachel(tenant)
    dest = tmp_path / "o"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    before, audio_calls = files_under(dest), len(tenant.requests("audio"))
    tenant.lib.add_item(text="new since the last run")
    r = cli("export", str(dest), "--tz", TZ, "--path", "by-voice/Rachl", "--delete")
    _one_error_line(r, "no folder by-voice/Rachl", "did you mean by-voice/Rachel?")
    assert files_under(dest) == before and len(tenant.requests("audio")) == audio_calls


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--path", "by-voice/Rachel/1999-01"), ("no folder by-voice/Rachel/1999-01", "by-voice/Rachel holds 20")),
        (("--path", "by-date/1999-01"), ("no folder by-date/1999-01",)),
        (("--model", "eleven_nonexistent_v9"), ("no item with model 'eleven_nonexistent_v9'",)),
        (("--source", "tts"), ("no item with source 'tts'", "did you mean TTS?")),
    ],
)
def test_a_filter_naming_nothing_is_one_line(tenant: Tenant, cli: Any, tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    _rachel(tenant)
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, *args)
    _one_error_line(r, *fragments)
    assert not (tmp_path / "o").exists() and tenant.requests("audio") == []


def test_filters_that_exist_but_match_nothing_together_are_an_empty_selection(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    _rachel(tenant)
    r = cli("export", str(tmp_path / "o"), "--tz", TZ, "--path", "by-voice/Rachel", "--since", "2999-01-01", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["selected"] == 0


# -- --delete guards ----------------------------------------------------------------------------


def test_an_empty_selection_never_empties_a_mirror(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "o"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    before = files_under(dest)
    for extra in ((), ("--max-delete", "1000"), ("--dry-run",)):
        r = cli("export", str(dest), "--tz", TZ, "--since", "2999-01-01", "--delete", *extra)
        _one_error_line(r, "refusing to delete all 48 objects of the mirror from an empty selection")
        assert files_under(dest) == before


def test_more_than_max_delete_is_refused_and_the_uploads_of_the_run_are_kept(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "o"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    gone = tenant.items()[:3]
    for item in gone:
        tenant.lib.delete(item.history_item_id)
    new = HistoryItem.from_json(tenant.lib.add_item(text="uploaded despite the refusal"))
    r = cli("export", str(dest), "--tz", TZ, "--delete", "--max-delete", "5", "--json")
    _one_error_line(r, "refusing to delete 6 objects (more than --max-delete 5)", "pass --max-delete 6")
    summary = json.loads(r.out)
    assert (summary["uploaded"], summary["deleted"], summary["not_deleted"]) == (1, 0, 6)
    files = exported(dest)
    assert all(any(i.history_item_id[:8] in k for k in files) for i in [*gone, new])
    assert any(e["item_id"] == new.history_item_id for e in _recorded(dest).values())  # the upload is recorded


def test_dry_run_shows_the_refusal(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    dest = tmp_path / "o"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    for item in tenant.items()[:3]:
        tenant.lib.delete(item.history_item_id)
    before = files_under(dest)
    r = cli("export", str(dest), "--tz", TZ, "--delete", "--max-delete", "5", "--dry-run")
    _one_error_line(r, "refusing to delete 6 objects")
    assert r.out.splitlines()[-1] == "plan: 21 selected, 0 to upload, 21 up to date, 6 to delete"
    assert files_under(dest) == before


def test_the_default_bound_refuses_a_large_delete_and_a_raised_one_allows_it(api_server: FakeApiServer, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "export-guards-large"
    lib = api_server.add_tenant(key, items=60, seed=5)
    t = Tenant(api_server, lib, key)
    monkeypatch.setenv("ELEVENLABS_API_KEY", key)
    monkeypatch.setenv("HISTORYFS_API_URL", api_server.base_url)
    try:
        dest = tmp_path / "o"
        assert cli("export", str(dest), "--tz", TZ).code == 0
        for item in t.items()[:55]:
            lib.delete(item.history_item_id)
        before = exported(dest)
        refused = cli("export", str(dest), "--tz", TZ, "--delete")
        _one_error_line(refused, "objects (more than --max-delete 100)")
        wanted = int(refused.err.split("refusing to delete ")[1].split()[0])
        after = exported(dest)  # 110, plus the old keys of items whose collision suffix changed (re-uploaded under new keys)
        assert wanted >= 110 and all(after.get(k) == v for k, v in before.items())
        r = cli("export", str(dest), "--tz", TZ, "--delete", "--max-delete", str(wanted), "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["deleted"] == wanted
        assert exported(dest) == expected_files(t, t.items()) and len(_recorded(dest)) == 10
    finally:
        api_server.remove_tenant(key)


def test_a_negative_max_delete_is_bad_input(tenant: Tenant, cli: Any, tmp_path: Path) -> None:
    _one_error_line(cli("export", str(tmp_path / "o"), "--delete", "--max-delete", "-1"), "bad --max-delete -1")
    assert not (tmp_path / "o").exists()
