"""--views and --recent: parsed by `historyfs mount` and `mount.historyfs`, bad values refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from historyfs import mount_helper
from historyfs.cli import build_parser, main
from historyfs.errors import ConfigError
from historyfs.mount import parse_views, settings_from_args


@pytest.mark.parametrize(("text", "recent", "views"), [
    ("all", 100, ("by-date", "by-model", "by-voice", "recent", "search")),
    ("by-date", 100, ("by-date",)),
    ("search, by-voice", 100, ("by-voice", "search")),
    ("by-date+search", 100, ("by-date", "search")),  # mount.historyfs's -o splits on commas
    ("all", 0, ("by-date", "by-model", "by-voice", "search")),
])  # fmt: skip
def test_views_are_parsed_in_listing_order(text: str, recent: int, views: tuple[str, ...]) -> None:
    assert parse_views(text, recent) == views


@pytest.mark.parametrize(("text", "recent", "message"), [
    ("by-dates", 100, "bad --views"),
    ("", 100, "bad --views"),
    ("recent", 0, "nothing to show"),
])  # fmt: skip
def test_bad_views_are_one_clear_error(text: str, recent: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_views(text, recent)
    assert "\n" not in str(info.value)


def test_mount_settings_carry_views_and_recent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "k")
    args = build_parser().parse_args(["mount", str(tmp_path), "--api-url", "http://127.0.0.1:9", "--views",
                                      "by-model,recent", "--recent", "7"])
    s = settings_from_args(args)
    assert s.options.views == ("by-model", "recent") and s.recent == 7


def test_a_negative_recent_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["mount", str(tmp_path), "--recent", "-1"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_mount_helper_translates_views_and_recent() -> None:
    assert mount_helper.translate(["historyfs", "/mnt/h", "-o", "views=by-date+search,recent=5"]) == [
        "mount", "/mnt/h", "--views", "by-date+search", "--recent", "5"]
