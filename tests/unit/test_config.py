"""Where settings come from: API key (env or file, never argv), URL, sizes, time zones, private folders."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from historyfs.config import (
    DEFAULT_API_URL,
    ensure_private_dir,
    load_api_key,
    parse_size,
    parse_tz,
    resolve_api_url,
)
from historyfs.errors import ConfigError


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "  sk_env_key \n")
    assert load_api_key() == "sk_env_key"


def test_key_file_wins_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_env_key")
    f = tmp_path / "key"
    f.write_text("\n  sk_file_key  \nignored\n")
    assert load_api_key(f) == "sk_file_key"


def test_missing_key_names_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY.*--api-key-file"):
        load_api_key()
    assert load_api_key(required=False) is None


@pytest.mark.parametrize("content,match", [("", "empty"), ("\n\n", "empty"), ("sk bad key", "spaces")])
def test_bad_key_files(tmp_path: Path, content: str, match: str) -> None:
    f = tmp_path / "key"
    f.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_api_key(f)
    assert "sk bad key" not in str(info.value)


def test_key_file_missing_or_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_api_key(tmp_path / "nope")
    with pytest.raises(ConfigError, match="folder"):
        load_api_key(tmp_path)


@pytest.mark.parametrize(
    "arg,expected",
    [
        (None, DEFAULT_API_URL),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://api.eu.example/v1/", "https://api.eu.example"),
        ("https://proxy.example/eleven", "https://proxy.example/eleven"),
    ],
)
def test_api_url(arg: str | None, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HISTORYFS_API_URL", raising=False)
    assert resolve_api_url(arg) == expected


def test_api_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTORYFS_API_URL", "http://127.0.0.1:9")
    assert resolve_api_url() == "http://127.0.0.1:9"
    assert resolve_api_url("http://127.0.0.1:10") == "http://127.0.0.1:10"


@pytest.mark.parametrize("bad", ["ftp://x", "localhost:80", "http://", "http://h:99999", "http://u:p@h", "http://h/?q=1"])
def test_bad_api_urls(bad: str) -> None:
    with pytest.raises(ConfigError, match="bad API URL"):
        resolve_api_url(bad)


@pytest.mark.parametrize("text,n", [("0", 0), ("100", 100), ("1K", 1024), ("10M", 10 << 20), ("1.5G", 3 << 29), ("2GiB", 2 << 30), ("1t", 1 << 40)])
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["", "ten", "-1G", "1X", "1.2.3M"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="bad size"):
        parse_size(bad)


def test_parse_tz() -> None:
    assert str(parse_tz("UTC")) == "UTC"
    assert str(parse_tz("Asia/Tokyo")) == "Asia/Tokyo"
    assert parse_tz(None) is not None and parse_tz("local") is not None
    with pytest.raises(ConfigError, match="unknown time zone"):
        parse_tz("Mars/Olympus")


def test_private_dir_is_0700_even_if_it_existed(tmp_path: Path) -> None:
    d = tmp_path / "a" / "cache"
    ensure_private_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    os.chmod(d, 0o755)
    ensure_private_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError):
        ensure_private_dir(f)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "historyfs", *args], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


def test_cli_usage_errors_are_one_line() -> None:
    for args in (["--no-such-flag"], ["mount"], ["frobnicate"], ["export", "s3://b", "--format", "flac"]):
        r = _cli(*args)
        assert r.returncode == 2, args
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_cli_has_no_api_key_flag() -> None:
    r = _cli("mount", "/tmp/x", "--api-key", "sk_secret")
    assert r.returncode == 2 and "sk_secret" not in r.stderr


def test_cli_version_and_help() -> None:
    assert _cli("--version").stdout.startswith("historyfs ")
    r = _cli("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("mount", "unmount", "demo", "fake-api", "export", "exporters"))
