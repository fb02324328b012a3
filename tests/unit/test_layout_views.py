"""historyfs.layout for the views beyond by-date and by-voice: by-model, recent/ and search/ names, selections."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from historyfs.errors import ConfigError
from historyfs.layout import (
    UNKNOWN_MODEL_DIR,
    Layout,
    Placement,
    is_probe,
    newest,
    search_query,
    split_selection,
)
from historyfs.models import HistoryItem

UTC = timezone.utc
T0 = int(datetime(2026, 11, 30, 14, 3, 27, tzinfo=UTC).timestamp())


def item(item_id: str = "ja9xsmfGhxYcymxGcOGB", **fields: Any) -> HistoryItem:
    d: dict[str, Any] = {
        "history_item_id": item_id, "date_unix": T0, "content_type": "audio/mpeg", "voice_id": "21m00Tcm4TlvDq8ikWAM",
        "voice_name": "Rachel", "model_id": "eleven_multilingual_v2", "text": "Welcome back to the show",
        "state": "created", "character_count_change_from": 0, "character_count_change_to": 5,
    }  # fmt: skip
    d.update(fields)
    return HistoryItem.from_json(d)


def place(*items: HistoryItem) -> dict[str, Placement]:
    return Layout(UTC).place_all(items)


def test_the_issue_example_name_in_recent_and_search() -> None:
    p = place(item())["ja9xsmfGhxYcymxGcOGB"]
    assert p.relpath("recent") == "recent/2026-11-30 14-03-27 Rachel - Welcome back to the show [ja9xsmfG].mp3"
    assert p.relpath("recent", "sidecar") == "recent/2026-11-30 14-03-27 Rachel - Welcome back to the show [ja9xsmfG].json"
    assert p.relpath("search/welcome back", "wav").startswith("search/welcome back/2026-11-30 14-03-27 Rachel - ")
    assert p.flat_stem.endswith(" - " + p.stem[9:])  # the same stem as in the other views, after its time


def test_by_model_is_like_by_voice() -> None:
    p = place(item())["ja9xsmfGhxYcymxGcOGB"]
    assert p.dir_parts("by-model") == ("eleven_multilingual_v2", "2026-11", "2026-11-30")
    assert p.relpath("by-model") == "by-model/eleven_multilingual_v2/2026-11/2026-11-30/14-03-27 Welcome back to the show [ja9xsmfG].mp3"
    assert p.under("by-model", ("eleven_multilingual_v2", "2026-11"))
    assert not p.under("by-model", ("eleven_v3",))


def test_model_folders_are_cleaned_and_told_apart_like_voices() -> None:
    placed = place(item("a" * 20, model_id=None), item("b" * 20, model_id="m/1"), item("c" * 20, model_id="eleven_v3"),
                   item("d" * 20, model_id="Eleven_V3"), item("e" * 20, model_id=UNKNOWN_MODEL_DIR))
    dirs = {k[0]: p.model_dir for k, p in placed.items()}
    assert dirs["a"] == UNKNOWN_MODEL_DIR  # the pseudo-folder keeps its name
    assert dirs["b"] == "m\uff0f1"
    assert dirs["c"].startswith("eleven_v3 (") and dirs["d"].startswith("Eleven_V3 (")
    assert dirs["e"].startswith(UNKNOWN_MODEL_DIR + " (")
    assert len({d.casefold() for d in dirs.values()}) == 5


def test_clashing_flat_names_get_a_counter_after_the_voice_the_oldest_keeps_its_name() -> None:
    """voice "A" + text "B - C" reads like voice "A - B" + text "C": same second, same id prefix."""
    first = item("abcdefgh1", voice_id="v1", voice_name="A", text="B - C")
    second = item("abcdefgh2", voice_id="v2", voice_name="A - B", text="C")
    placed = place(first, second)
    assert placed["abcdefgh1"].flat_stem == "2026-11-30 14-03-27 A - B - C [abcdefgh]"
    assert placed["abcdefgh2"].flat_stem == "2026-11-30 14-03-27 A - B~1 - C [abcdefgh]"
    assert placed["abcdefgh1"].stem != placed["abcdefgh2"].stem


def test_a_long_voice_is_cut_to_fit_the_flat_name() -> None:
    p = place(item(voice_name="é" * 300))["ja9xsmfGhxYcymxGcOGB"]
    name = p.flat_name("sidecar")
    assert len(name.encode()) <= 255
    assert name.endswith(" - Welcome back to the show [ja9xsmfG].json")


def test_newest_is_newest_first_with_ties_by_id() -> None:
    items = [item(f"id{i}", date_unix=T0 + i // 2) for i in range(6)]
    assert [i.history_item_id for i in newest(items, 3)] == ["id5", "id4", "id3"]
    assert newest(items, 0) == []
    assert len(newest(items, 100)) == 6


@pytest.mark.parametrize("name", [".hidden", ".directory", ".DS_Store", "._x", ".Trash-1000", ".git", "autorun.inf",
                                  "AUTORUN.INF", "Desktop.ini", "desktop.ini", "folder.jpg", "Thumbs.db",
                                  "AlbumArt_{X}_Large.jpg", "$RECYCLE.BIN", "BDMV"])
def test_probe_names_are_not_queries(name: str) -> None:
    assert is_probe(name)
    assert search_query(name) is None


@pytest.mark.parametrize("name", ["welcome back", "Zoë 声音", "autorun now", "a.b", "the", "folder", "cover"])
def test_other_names_are_queries(name: str) -> None:
    assert search_query(name) == name


def test_blank_and_undecodable_names_are_not_queries() -> None:
    assert search_query("   ") is None
    assert search_query("caf\udce9") is None  # a Latin-1 name from a non-UTF-8 client (surrogateescape)


@pytest.mark.parametrize(("path", "expected"), [
    ("by-model/eleven_v3/2026-11/2026-11-30", ("by-model", ("eleven_v3", "2026-11", "2026-11-30"))),
    ("recent", ("recent", ())),
    ("recent/", ("recent", ())),
    ("search/welcome back", ("search", ("welcome back",))),
    ("search/cafe\u0301", ("search", ("caf\u00e9",))),
])  # fmt: skip
def test_split_selection_of_the_new_views(path: str, expected: tuple[str, tuple[str, ...]]) -> None:
    assert split_selection(path) == expected


@pytest.mark.parametrize(("path", "message"), [
    ("by-model/eleven_v3/November", "month"),
    ("by-model/eleven_v3/2026-11/2026-12-01", "day folder"),
    ("recent/2026-11-30 x.mp3", "no sub-folders"),
    ("search", "words of one search"),
    ("search/a/b", "words of one search"),
    ("search/.hidden", "words of one search"),
    ("search/Desktop.ini", "words of one search"),
])  # fmt: skip
def test_split_selection_rejects_bad_new_view_paths(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        split_selection(path)
    assert "\n" not in str(exc.value)
