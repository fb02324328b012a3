"""Property tests for historyfs.layout: any names, texts, models and dates give safe, unique, stable paths
in every view (by-date, by-model, by-voice, and the flat recent/ and search/ folders)."""

from __future__ import annotations

import random
import unicodedata
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from historyfs.layout import NAME_MAX_BYTES, TREE_VIEWS, Layout, Placement, clean_component, model_key, voice_key
from historyfs.models import HistoryItem

LAST_DATE = 253402300799
ZONES = [timezone.utc, ZoneInfo("Asia/Tokyo"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Pacific/Kiritimati")]
# Far past to year 9999 (and beyond: the layout clamps); the models reject dates outside their range.
DATES = st.integers(min_value=-62135596800, max_value=LAST_DATE)
# Any code point, surrogates and controls included: JSON can carry them.
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60)
NAMES = st.one_of(st.none(), ANY_TEXT, st.sampled_from(["Rachel", "rachel", "Dialogue", "AC/DC", ".", "..", ""]))
IDS = st.one_of(
    st.text(alphabet="abcABC012/", min_size=1, max_size=12),
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x10FFFF), min_size=1, max_size=300),
)
CONTENT_TYPES = st.sampled_from(["audio/mpeg", "audio/x-wav", "audio/opus", "audio/flac", "weird/type", ""])
MODELS = st.one_of(st.none(), st.sampled_from(["eleven_v3", "Eleven_V3", "m/1", ".", "Unknown model", ""]), ANY_TEXT)


@st.composite
def raw_items(draw: st.DrawFn) -> dict[str, Any]:
    d: dict[str, Any] = {
        "history_item_id": draw(IDS).replace("\x00", "_"),
        "date_unix": draw(st.one_of(DATES, st.sampled_from([0, 1_764_000_000]))),
        "content_type": draw(CONTENT_TYPES),
        "voice_id": draw(st.one_of(st.none(), st.sampled_from(["v1", "v2", "V1", "v1xxxxZ"]), ANY_TEXT)),
        "voice_name": draw(NAMES),
        "model_id": draw(MODELS),
        "text": draw(st.one_of(st.none(), ANY_TEXT, st.text(max_size=300))),
        "state": "created",
        "character_count_change_from": 0,
        "character_count_change_to": 1,
    }
    if draw(st.booleans()) and not d["voice_id"]:
        d["dialogue"] = [{"text": draw(ANY_TEXT), "voice_id": "x", "voice_name": draw(ANY_TEXT)}]
    return d


LIBRARIES = st.lists(raw_items(), min_size=1, max_size=25, unique_by=lambda d: d["history_item_id"])


def assert_safe(name: str) -> None:
    assert name not in ("", ".", "..")
    data = name.encode("utf-8")  # raises on a lone surrogate: the name must be valid UTF-8
    assert len(data) <= NAME_MAX_BYTES
    assert "/" not in name and "\x00" not in name
    assert not any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029\u202e\u202d" for c in name)
    assert unicodedata.is_normalized("NFC", name)
    assert name == name.strip() and not name.endswith(".")


def file_names(p: Placement) -> list[str]:
    return [p.name("audio"), p.name("sidecar"), p.name("wav")]


def flat_names(p: Placement) -> list[str]:
    return [p.flat_name("audio"), p.flat_name("sidecar"), p.flat_name("wav")]


def assert_unique_per_folder(names_by_folder: dict[Any, list[str]]) -> None:
    for names in names_by_folder.values():
        assert len(names) == len(set(names)), "two files in one folder share a name (ignoring case)"


@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT, fallback=st.sampled_from(["fallback", "", ".."]), limit=st.integers(1, 300))
def test_clean_component_is_always_safe(text: str, fallback: str, limit: int) -> None:
    name = clean_component(text, fallback, max_bytes=min(limit, NAME_MAX_BYTES))
    assert_safe(name)
    assert len(name.encode()) <= max(limit, 1)
    assert clean_component(name, fallback) == name  # idempotent


@settings(max_examples=120, deadline=None)
@given(raws=LIBRARIES, tz=st.sampled_from(ZONES), seed=st.integers(0, 2**32))
def test_any_library_gets_safe_unique_stable_paths(raws: list[dict[str, Any]], tz: Any, seed: int) -> None:
    items = [HistoryItem.from_json(d) for d in raws]
    placed = Layout(tz).place_all(items)
    assert set(placed) == {i.history_item_id for i in items}
    folders: dict[tuple[str, ...], list[str]] = {}
    for p in placed.values():
        for view in TREE_VIEWS:
            for part in (*p.dir_parts(view), *file_names(p)):
                assert_safe(part)
            folders.setdefault((view, *p.dir_parts(view)), []).extend({n.casefold() for n in file_names(p)})
    assert_unique_per_folder(folders)
    for key_of, dir_of in ((voice_key, lambda p: p.voice_dir), (model_key, lambda p: p.model_dir)):
        keys_by_dir: dict[str, set[str]] = {}
        for i in items:
            keys_by_dir.setdefault(dir_of(placed[i.history_item_id]).casefold(), set()).add(key_of(i))
        assert all(len(keys) == 1 for keys in keys_by_dir.values()), "two voices (or models) share a folder"
    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    assert Layout(tz).place_all(shuffled) == placed


@settings(max_examples=60, deadline=None)
@given(raws=LIBRARIES, extra=raw_items())
def test_adding_a_newer_item_moves_only_items_it_collides_with(
    raws: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    items = [HistoryItem.from_json(d) for d in raws]
    newest = max(i.date_unix for i in items)
    assume(newest < LAST_DATE)
    new_id = "new-" + extra["history_item_id"]
    new = HistoryItem.from_json({**extra, "history_item_id": new_id, "date_unix": newest + 1})
    before = Layout(timezone.utc).place_all(items)
    after = Layout(timezone.utc).place_all([*items, new])
    mine = after[new.history_item_id]
    known_voices = {voice_key(i) for i in items}
    for item_id, p in before.items():
        moved = after[item_id]
        if moved.voice_dir != p.voice_dir:  # a voice folder changes only for a newly met voice's name
            assert voice_key(new) not in known_voices
        elif moved.model_dir != p.model_dir:  # a model folder changes only for a new model's clash
            assert model_key(new) not in {model_key(i) for i in items}
        elif moved != p:  # a file name changes only on the newcomer's day
            assert moved.day == mine.day


@settings(max_examples=120, deadline=None)
@given(raws=LIBRARIES, tz=st.sampled_from(ZONES), seed=st.integers(0, 2**32))
def test_flat_names_are_safe_unique_and_sort_by_time(raws: list[dict[str, Any]], tz: Any, seed: int) -> None:
    """recent/ and search/ hold any subset of the items in one folder: names unique among ALL items."""
    items = [HistoryItem.from_json(d) for d in raws]
    placed = Layout(tz).place_all(items)
    every: dict[str, list[str]] = {"flat": []}
    for p in placed.values():
        for name in flat_names(p):
            assert_safe(name)
        every["flat"].extend({n.casefold() for n in flat_names(p)})
        assert p.flat_stem.startswith(f"{p.day} {p.stem[:8]} ")
    assert_unique_per_folder(every)
    stems = sorted(placed.values(), key=lambda p: p.flat_name())
    walls = [f"{p.day} {p.stem[:8]}" for p in stems]
    assert walls == sorted(walls), "sorting recent/ by name does not sort it by date and time"
    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    assert Layout(tz).place_all(shuffled) == placed


@settings(max_examples=80, deadline=None)
@given(voice=ANY_TEXT, text=ANY_TEXT, ids=st.lists(st.sampled_from(["a", "a-", "A", "a - b", "é" * 40]), min_size=2,
                                                    max_size=5, unique=True))
def test_flat_names_of_one_second_stay_apart(voice: str, text: str, ids: list[str]) -> None:
    """Only clips of one second can clash in a flat folder (voices or texts holding " - ", long voices)."""
    base = {"date_unix": 1_764_000_000, "content_type": "audio/mpeg", "state": "created",
            "character_count_change_from": 0, "character_count_change_to": 1}
    items = [HistoryItem.from_json({**base, "history_item_id": i, "voice_id": f"v{n}",
                                    "voice_name": voice + " - " * n + "x" * (300 * (n % 2)), "text": text + " - " * n})
             for n, i in enumerate(ids)]
    placed = Layout(timezone.utc).place_all(items)
    names = [p.flat_name() for p in placed.values()]
    assert len({n.casefold() for n in names}) == len(names)
    assert all(len(n.encode()) <= NAME_MAX_BYTES for n in names)
