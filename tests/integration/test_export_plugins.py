"""Third-party exporter plugins: discovery through the entry-point group, listing, use, refusal.

The plugin (tests/plugins/historyfs_testplugin) is a separate distribution with its own
pyproject.toml; the ``testplugin`` fixture installs it for the session and removes it after.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest

from exporters import PluginError, get_destination_class, registry
from exporters.s3 import S3Destination
from tests.integration.test_export_cli import TZ, Tenant, api_server, cli, expected_files, tenant  # noqa: F401 - fixtures
from tests.plugins.install import InstalledPlugin


def test_exporters_lists_built_ins_and_the_plugin(testplugin: InstalledPlugin) -> None:  # noqa: F811
    r = subprocess.run([sys.executable, "-m", "historyfs", "exporters", "--json"], env=testplugin.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {e["scheme"]: e for e in json.loads(r.stdout)}
    assert listed["memory"] == {"scheme": "memory", "plugin": "historyfs_testplugin:MemoryDestination", "origin": "historyfs-testplugin"}
    assert listed["s3"] == {"scheme": "s3", "plugin": "exporters.s3:S3Destination", "origin": "built-in"}
    assert listed["file"]["origin"] == "built-in"
    assert "claims scheme 's3'" in r.stderr and "refused" in r.stderr


def test_exporters_plain_text_without_plugins() -> None:
    r = subprocess.run([sys.executable, "-m", "historyfs", "exporters"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["file", "s3", "*"]


def test_a_plugin_cannot_take_over_a_built_in(testplugin: InstalledPlugin, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    with caplog.at_level(logging.WARNING, logger="exporters.registry"):
        registry.load_entry_points(refresh=True)
    assert get_destination_class("s3") is S3Destination
    assert any("HijackS3" in rec.getMessage() and "refused" in rec.getMessage() for rec in caplog.records)


def test_an_invalid_plugin_is_named_when_used(testplugin: InstalledPlugin, cli: Any, tenant: Tenant, tmp_path: Any) -> None:  # noqa: F811
    with pytest.raises(PluginError, match="'historyfs_testplugin:NotAnExporter' is not a subclass of exporters.Destination"):
        get_destination_class("broken")
    r = cli("export", "broken://anything")
    assert r.code == 1 and "NotAnExporter" in r.err and len(r.err.strip().splitlines()) == 1


def test_export_to_the_plugin_destination(testplugin: InstalledPlugin, cli: Any, tenant: Tenant) -> None:  # noqa: F811
    import historyfs_testplugin  # type: ignore[import-not-found]

    r = cli("export", "memory://exported", "--tz", TZ, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["uploaded"] == 24
    stored = {k: v[0] for k, v in historyfs_testplugin.STORES["exported"].items() if not k.startswith(".historyfs")}
    assert stored == expected_files(tenant, tenant.items())
    again = json.loads(cli("export", "memory://exported", "--tz", TZ, "--json").out)
    assert again["uploaded"] == 0 and again["skipped"] == 24
