"""A run whose manifest was lost uploads only what is missing; what a destination is told about an item.

In-process and fast: the manifest is removed by hand (as a ``kill -9`` before its first save
leaves things; tests/reliability/test_export_recovery.py kills real runs). ``--dest-opt`` reaches
the plugin, and an unknown key is one line.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exporters.manifest import MANIFEST_KEY
from tests.integration.test_export_cli import TZ, Tenant, api_server, cli, expected_files, tenant  # noqa: F401 - fixtures
from tests.plugins.install import InstalledPlugin


def test_a_folder_without_its_manifest_is_recovered_not_uploaded_again(cli: Any, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    dest = tmp_path / "mirror"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    (dest / MANIFEST_KEY).unlink()
    lost = next(p for p in sorted(dest.rglob("*.mp3")))
    lost.unlink()
    audio_calls = len(tenant.requests("audio"))
    r = cli("export", str(dest), "--tz", TZ, "--json")
    summary = json.loads(r.out)
    assert r.code == 0 and (summary["uploaded"], summary["skipped"]) == (1, 23)
    assert len(tenant.requests("audio")) == audio_calls + 1
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".")} == expected_files(tenant, tenant.items())
    again = json.loads(cli("export", str(dest), "--tz", TZ, "--json").out)
    assert again["uploaded"] == 0 and (dest / MANIFEST_KEY).exists()


def test_a_dry_run_plans_only_what_is_missing_and_writes_nothing(cli: Any, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    dest = tmp_path / "mirror"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    (dest / MANIFEST_KEY).unlink()
    r = cli("export", str(dest), "--tz", TZ, "--dry-run")
    assert r.code == 0 and r.out.strip().splitlines()[-1] == "plan: 24 selected, 0 to upload, 24 up to date, 0 to delete"
    assert not (dest / MANIFEST_KEY).exists()


def test_the_plugin_gets_its_options_dates_and_metadata_and_recovers(testplugin: InstalledPlugin, cli: Any, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    import historyfs_testplugin  # type: ignore[import-not-found]

    log = tmp_path / "store.log"
    r = cli("export", "memory://recovery", "--tz", TZ, "--dest-opt", f"log={log}", "--json")
    assert r.code == 0, r.err
    store = historyfs_testplugin.STORES["recovery"]
    item = tenant.items()[3]
    audio_key = tenant.placements()[item.history_item_id].relpath("by-voice")
    info = store[audio_key][1]
    assert info.date == datetime.fromtimestamp(item.date_unix, timezone.utc)
    assert info.metadata["voice"] == item.voice_name and info.metadata["model"] == item.model_id and info.metadata["text"] == item.text
    historyfs_testplugin.STORES.pop("recovery")  # a new process: the store comes back from its log, but without the manifest
    lines = [ln for ln in log.read_text().splitlines() if json.loads(ln).get("put") != MANIFEST_KEY]
    log.write_text("\n".join(lines) + "\n")
    again = json.loads(cli("export", "memory://recovery", "--tz", TZ, "--dest-opt", f"log={log}", "--json").out)
    assert (again["uploaded"], again["skipped"]) == (0, 24)


def test_an_unknown_dest_opt_is_one_line_before_anything_happens(testplugin: InstalledPlugin, cli: Any, tenant: Tenant) -> None:  # noqa: F811
    r = cli("export", "memory://opts", "--tz", TZ, "--dest-opt", "lgo=/tmp/x")
    assert r.code == 1 and r.err.strip() == "historyfs export: error: unknown --dest-opt 'lgo' for memory:// destinations (they take: log)"
    assert tenant.requests("audio") == []
    r = cli("export", "memory://opts", "--dest-opt", "novalue")
    assert r.code == 1 and r.err.strip() == "historyfs export: error: bad --dest-opt 'novalue': expected KEY=VALUE"


def test_a_store_that_cannot_describe_its_objects_gets_them_uploaded_again(cli: Any, tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    """Recovery only saves uploads: when describe() fails, the run uploads those items again and succeeds."""
    from exporters import DestinationError, register
    from exporters.local import FolderDestination
    from exporters.registry import unregister

    class Forgetful(FolderDestination):
        scheme = "forgetful"

        def __init__(self, url: str, options: Any) -> None:
            super().__init__(url.replace("forgetful://", "file://", 1), options)

        def describe(self, keys: Any) -> list[Any]:
            raise DestinationError("the store is down")

    dest = tmp_path / "mirror"
    assert cli("export", str(dest), "--tz", TZ).code == 0
    (dest / MANIFEST_KEY).unlink()
    register("forgetful", Forgetful)
    try:
        r = cli("export", f"forgetful://{dest}", "--tz", TZ, "--json")
    finally:
        unregister("forgetful")
    assert r.code == 0 and json.loads(r.out)["uploaded"] == 24
    assert "could not be described (the store is down): uploading them again" in r.err
