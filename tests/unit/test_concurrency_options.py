"""--max-concurrency reaches the API client of `historyfs mount`, `mount.historyfs` and `historyfs export`."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from exporters.cli import options_from_args
from exporters.runner import _client
from historyfs import mount_helper
from historyfs.cli import build_parser
from historyfs.mount import make_client, settings_from_args


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A key of its own, so this test's cap lands on a budget no other test uses."""
    value = "sk_cap_" + secrets.token_hex(8)
    monkeypatch.setenv("ELEVENLABS_API_KEY", value)
    return value


def test_mount_passes_the_cap_to_its_client(key: str, tmp_path: Path) -> None:
    args = build_parser().parse_args(["mount", str(tmp_path), "--api-url", "http://127.0.0.1:9", "--max-concurrency", "3"])
    settings = settings_from_args(args)
    assert settings.max_concurrency == 3
    with make_client(settings) as client:
        assert client.stats.snapshot()["concurrency"]["cap"] == 3


def test_mount_without_the_flag_has_no_cap(key: str, tmp_path: Path) -> None:
    settings = settings_from_args(build_parser().parse_args(["mount", str(tmp_path), "--api-url", "http://127.0.0.1:9"]))
    assert settings.max_concurrency is None


def test_mount_helper_translates_the_option() -> None:
    assert mount_helper.translate(["historyfs", "/mnt/h", "-o", "max_concurrency=2,ro"]) == ["mount", "/mnt/h", "--max-concurrency", "2"]


def test_export_passes_the_cap_to_its_client(key: str, tmp_path: Path) -> None:
    opts = options_from_args(build_parser().parse_args(["export", str(tmp_path), "--max-concurrency", "4"]))
    assert opts.max_concurrency == 4
    with _client(None, key, None, "http://127.0.0.1:9", opts) as client:
        assert client.stats.snapshot()["concurrency"]["cap"] == 4
