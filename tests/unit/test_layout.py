"""historyfs.layout: names, folders, collisions, stability, time zones, selections."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from historyfs.errors import ConfigError
from historyfs.layout import (
    Layout,
    Placement,
    clean_component,
    extension_for,
    split_selection,
    stem_text,
)
from historyfs.models import HistoryItem

UTC = timezone.utc
T0 = int(datetime(2026, 11, 23, 14, 3, 27, tzinfo=UTC).timestamp())


def item(item_id: str = "ja9xsmfGhxYcymxGcOGB", **fields: Any) -> HistoryItem:
    d: dict[str, Any] = {
        "history_item_id": item_id,
        "date_unix": T0,
        "content_type": "audio/mpeg",
        "voice_id": "21m00Tcm4TlvDq8ikWAM",
        "voice_name": "Rachel",
        "text": "Hello",
        "state": "created",
        "character_count_change_from": 0,
        "character_count_change_to": 5,
    }
    d.update(fields)
    return HistoryItem.from_json(d)


def place(*items: HistoryItem, tz: Any = UTC) -> dict[str, Placement]:
    return Layout(tz).place_all(items)


def place1(it: HistoryItem, tz: Any = UTC) -> Placement:
    return place(it, tz=tz)[it.history_item_id]


# ---------------------------------------------------------------- clean_component


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Rachel", "Rachel"),
        ("AC/DC", "AC\uff0fDC"),
        ("a\x00b", "a b"),
        ("tab\there\nnew\rline", "tab here new line"),
        ("del\x7fc1\x85\x9fend", "del c1 end"),
        ("line\u2028para\u2029end", "line para end"),
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ("iso\u2066late\u2069 lrm\u200e bom\ufeff", "isolate lrm bom"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("  many    spaces\u00a0here  ", "many spaces here"),
        ("back\\slash", "back\\slash"),
        ("colon: yes", "colon: yes"),
        ("trailing dots...", "trailing dots"),
        ("dots and spaces . . ", "dots and spaces"),
        (".hidden", ".hidden"),
        ("..a", "..a"),
        ("e\u0301mile", "\u00e9mile"),
    ],
)
def test_clean_component_cases(raw: str, expected: str) -> None:
    assert clean_component(raw, "fallback") == expected


@pytest.mark.parametrize("raw", ["", ".", "..", "...", "   ", "\x00\x01", "\u202e", " . . "])
def test_clean_component_falls_back_when_nothing_usable_is_left(raw: str) -> None:
    assert clean_component(raw, "Unknown voice") == "Unknown voice"


def test_clean_component_cleans_an_unusable_fallback_too() -> None:
    assert clean_component("", "a/b") == "a\uff0fb"
    assert clean_component("", "..") == "_"


@pytest.mark.parametrize("char", ["é", "€", "😀", "a"])
def test_clean_component_truncates_to_255_bytes_on_a_character_boundary(char: str) -> None:
    name = clean_component(char * 300, "x")
    data = name.encode("utf-8")
    assert 255 - len(char.encode()) < len(data) <= 255
    assert set(name) == {char}


def test_clean_component_max_bytes_reserves_room() -> None:
    assert clean_component("é" * 100, "x", max_bytes=11) == "é" * 5
    assert clean_component("abc def", "x", max_bytes=4) == "abc"  # no trailing space after the cut


# ---------------------------------------------------------------- extensions


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        ("audio/mpeg", ".mp3"),
        ("audio/mp3", ".mp3"),
        ("AUDIO/MPEG", ".mp3"),
        ("audio/mpeg; charset=binary", ".mp3"),
        ("audio/wav", ".wav"),
        ("audio/x-wav", ".wav"),
        ("audio/wave", ".wav"),
        ("audio/ogg;codecs=opus", ".ogg"),
        ("audio/opus", ".opus"),
        ("audio/flac", ".flac"),
        ("audio/aac", ".aac"),
        ("audio/mp4", ".m4a"),
        ("audio/basic", ".pcm"),
        ("audio/pcm", ".pcm"),
        ("audio/L16;rate=16000", ".pcm"),
        ("application/octet-stream", ".bin"),
        ("", ".bin"),
        (None, ".bin"),
    ],
)
def test_extension_for(content_type: str | None, ext: str) -> None:
    assert extension_for(content_type) == ext


def test_placement_uses_the_extension_and_wav_file_of_a_wav_item_is_its_audio() -> None:
    mp3 = place1(item(content_type="audio/mpeg"))
    assert mp3.audio_name() == mp3.stem + ".mp3"
    assert mp3.audio_name("wav") == mp3.stem + ".wav"
    wav = place1(item(content_type="audio/x-wav"))
    assert wav.audio_name("wav") == wav.audio_name() == wav.stem + ".wav"
    with pytest.raises(ValueError):
        mp3.audio_name("flac")


# ---------------------------------------------------------------- stems


def test_stem_is_time_text_and_id_prefix() -> None:
    p = place1(item(text="Hello there"))
    assert p.stem == "14-03-27 Hello there [ja9xsmfG]"
    assert p.sidecar_name == "14-03-27 Hello there [ja9xsmfG].json"


def test_stem_text_cuts_at_a_word_boundary_and_collapses_whitespace() -> None:
    text = "The   quick brown\tfox jumps over\nthe lazy dog and keeps on running"
    assert stem_text(text) == "The quick brown fox jumps over the lazy"
    assert len(stem_text(text)) <= 40


def test_stem_text_hard_cuts_a_long_word() -> None:
    assert stem_text("x" * 100) == "x" * 40
    assert stem_text("short " + "y" * 100) == "short " + "y" * 34


@pytest.mark.parametrize("text", [None, "", "   ", "\x00\x01"])
def test_empty_text_reads_no_text(text: str | None) -> None:
    assert place1(item(text=text)).stem == "14-03-27 (no text) [ja9xsmfG]"


def test_dialogue_item_uses_its_first_line_and_the_dialogue_folder() -> None:
    d = item(
        voice_id=None,
        voice_name=None,
        text="",
        dialogue=[
            {"text": "", "voice_id": "a", "voice_name": "A"},
            {"text": "First words", "voice_id": "b", "voice_name": "B"},
        ],
    )
    p = place1(d)
    assert p.voice_dir == "Dialogue"
    assert p.stem == "14-03-27 First words [ja9xsmfG]"


def test_only_the_first_100_characters_of_the_text_matter() -> None:
    base = "word " * 8
    a = place1(item(text=base + "A" * 200))
    b = place1(item(text=base + "A" * 92 + "B" * 500))
    assert a.stem == b.stem


def test_slim_records_place_like_full_items() -> None:
    @dataclass(frozen=True, slots=True)
    class Slim:
        history_item_id: str
        date_unix: int
        content_type: str
        voice_id: str | None
        voice_name: str | None
        model_id: str | None
        is_dialogue: bool
        display_text: str

    full = [item(f"id{i:018d}", date_unix=T0 + i, text=f"clip {i} " + "long text " * 40, model_id=f"m{i % 3}")
            for i in range(20)]
    slim = [
        Slim(
            i.history_item_id, i.date_unix, i.content_type, i.voice_id, i.voice_name, i.model_id, i.is_dialogue,
            i.display_text[:200],
        )
        for i in full
    ]
    assert Layout(UTC).place_all(slim) == Layout(UTC).place_all(full)


def test_stems_sort_in_time_order_within_a_day() -> None:
    rng = random.Random(7)
    day_start = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    items = [
        item(f"{rng.getrandbits(64):016x}", date_unix=day_start + rng.randrange(86400), text=rng.choice("baz"))
        for _ in range(300)
    ]
    placed = place(*items)
    by_name = sorted(items, key=lambda i: placed[i.history_item_id].audio_name())
    assert [i.date_unix for i in by_name] == sorted(i.date_unix for i in items)
    assert {placed[i.history_item_id].day for i in items} == {"2026-03-01"}


# ---------------------------------------------------------------- voice folders


def test_voice_folders_pseudo_voices() -> None:
    assert place1(item(voice_id=None, voice_name=None)).voice_dir == "Unknown voice"
    assert place1(item(voice_id=None, voice_name="Old voice")).voice_dir == "Old voice"
    assert place1(item(voice_id="abcdefghij", voice_name=None)).voice_dir == "Unknown voice (abcdef)"


def _dirs(*items: HistoryItem) -> list[str]:
    placed = place(*items)
    return [placed[i.history_item_id].voice_dir for i in items]


def test_same_name_two_voices_both_get_an_id_suffix() -> None:
    a = item("a" * 20, voice_id="VOICEaaaaa", voice_name="Rachel")
    b = item("b" * 20, voice_id="VOICEbbbbb", voice_name="Rachel")
    c = item("c" * 20, voice_id="OTHER", voice_name="Adam")
    assert _dirs(a, b, c) == ["Rachel (VOICEa)", "Rachel (VOICEb)", "Adam"]


def test_voice_names_equal_ignoring_case_stay_apart() -> None:
    a = item("a" * 20, voice_id="v1xxxx", voice_name="rachel")
    b = item("b" * 20, voice_id="v2xxxx", voice_name="RACHEL")
    assert _dirs(a, b) == ["rachel (v1xxxx)", "RACHEL (v2xxxx)"]


def test_voice_names_equal_after_cleaning_stay_apart() -> None:
    a = item("a" * 20, voice_id="v1xxxx", voice_name="AC/DC")
    b = item("b" * 20, voice_id="v2xxxx", voice_name="AC\uff0fDC ")
    assert _dirs(a, b) == ["AC\uff0fDC (v1xxxx)", "AC\uff0fDC (v2xxxx)"]


def test_a_real_voice_called_dialogue_does_not_merge_with_dialogues() -> None:
    real = item("a" * 20, voice_id="realvoice", voice_name="dialogue")
    line = {"text": "hi", "voice_id": "x", "voice_name": "X"}
    dia = item("b" * 20, voice_id=None, voice_name=None, text="", dialogue=[line])
    assert _dirs(real, dia) == ["dialogue (realvo)", "Dialogue"]


def test_voices_known_only_by_name_get_a_hash_suffix() -> None:
    a = item("a" * 20, voice_id=None, voice_name="Zed")
    b = item("b" * 20, voice_id=None, voice_name="zed")
    da, db = _dirs(a, b)
    assert da.startswith("Zed (") and db.startswith("zed (") and da.casefold() != db.casefold()


def test_suffix_lengthens_when_voice_ids_share_a_prefix() -> None:
    a = item("a" * 20, voice_id="SAMEPREFIX1", voice_name="Rachel")
    b = item("b" * 20, voice_id="SAMEPREFIX2", voice_name="Rachel")
    assert _dirs(a, b) == ["Rachel (SAMEPREFIX1)", "Rachel (SAMEPREFIX2)"]


def test_voice_folder_keeps_the_oldest_name_after_a_rename() -> None:
    old = item("a" * 20, voice_name="Rachel", date_unix=T0)
    new = item("b" * 20, voice_name="Rachel v2", date_unix=T0 + 100)
    assert _dirs(new, old) == ["Rachel", "Rachel"]


def test_a_newer_item_that_names_a_nameless_voice_does_not_move_older_files() -> None:
    old = item("a" * 20, voice_id="abcdefghij", voice_name=None, date_unix=T0)
    new = item("b" * 20, voice_id="abcdefghij", voice_name="Named", date_unix=T0 + 100)
    assert _dirs(old, new) == ["Unknown voice (abcdef)"] * 2


def test_long_voice_name_with_suffix_stays_within_255_bytes() -> None:
    a = item("a" * 20, voice_id="v1xxxx", voice_name="é" * 300)
    b = item("b" * 20, voice_id="v2xxxx", voice_name="é" * 300)
    for d in _dirs(a, b):
        assert len(d.encode()) <= 255
        assert d.endswith(")")
    assert len(set(_dirs(a, b))) == 2


# ---------------------------------------------------------------- stem collisions


def test_same_second_same_text_different_ids_do_not_collide() -> None:
    a, b = item("AAAAAAAAzz"), item("BBBBBBBBzz")
    placed = place(a, b)
    assert placed["AAAAAAAAzz"].stem == "14-03-27 Hello [AAAAAAAA]"
    assert placed["BBBBBBBBzz"].stem == "14-03-27 Hello [BBBBBBBB]"


def test_same_id_prefix_lengthens_the_id_part_of_the_colliding_items_only() -> None:
    a, b, c = item("abcdefgh1xyz"), item("abcdefgh2xyz"), item("zzzzzzzz0000")
    placed = place(a, b, c)
    assert placed["abcdefgh1xyz"].stem == "14-03-27 Hello [abcdefgh1]"
    assert placed["abcdefgh2xyz"].stem == "14-03-27 Hello [abcdefgh2]"
    assert placed["zzzzzzzz0000"].stem == "14-03-27 Hello [zzzzzzzz]"


def test_ids_equal_ignoring_case_are_told_apart() -> None:
    placed = place(item("ABCDEFGH1"), item("abcdefgh2"))
    assert placed["ABCDEFGH1"].stem == "14-03-27 Hello [ABCDEFGH1]"
    assert placed["abcdefgh2"].stem == "14-03-27 Hello [abcdefgh2]"


def test_ids_equal_after_cleaning_get_counters() -> None:
    placed = place(item("abcdefgh/x"), item("abcdefgh\uff0fx"))
    stems = sorted(p.stem for p in placed.values())
    assert stems == ["14-03-27 Hello [abcdefgh\uff0fx~1]", "14-03-27 Hello [abcdefgh\uff0fx~2]"]


def test_same_stem_on_other_days_is_fine() -> None:
    a = item("abcdefgh1", voice_id="v1", voice_name="A")
    b = item("abcdefgh2", voice_id="v1", voice_name="A", date_unix=T0 + 86400)
    placed = place(a, b)
    assert placed["abcdefgh1"].stem == placed["abcdefgh2"].stem == "14-03-27 Hello [abcdefgh]"


def test_same_stem_of_two_voices_on_one_day_is_told_apart() -> None:
    """by-model and the flat views put both voices' clips of a day in one folder."""
    a = item("abcdefgh1", voice_id="v1", voice_name="A", model_id="m")
    b = item("abcdefgh2", voice_id="v2", voice_name="B", model_id="m")
    placed = place(a, b)
    assert placed["abcdefgh1"].stem == "14-03-27 Hello [abcdefgh1]"
    assert placed["abcdefgh2"].stem == "14-03-27 Hello [abcdefgh2]"


def test_duplicate_ids_in_input_are_placed_once() -> None:
    placed = place(item("x" * 20), item("x" * 20))
    assert list(placed) == ["x" * 20]
    assert placed["x" * 20].stem.endswith("[xxxxxxxx]")


def test_long_id_and_multibyte_text_stay_within_255_bytes() -> None:
    placed = place(item("é" * 300, text="😀" * 100), item("é" * 299 + "x", text="😀" * 100))
    assert len({p.stem for p in placed.values()}) == 2
    for p in placed.values():
        for kind in ("audio", "sidecar", "wav"):
            assert len(p.name(kind).encode()) <= 255


# ---------------------------------------------------------------- stability


def _library(n: int, seed: int) -> list[HistoryItem]:
    rng = random.Random(seed)
    voices = [("v1", "Rachel"), ("v2", "rachel"), ("v3", "Adam"), (None, None)]
    out = []
    for _ in range(n):
        vid, name = rng.choice(voices)
        out.append(
            item(
                f"{rng.getrandbits(40):010x}",
                date_unix=T0 + rng.randrange(-3 * 86400, 3 * 86400),
                voice_id=vid,
                voice_name=name,
                text=rng.choice(["Hello", "hello", "Bye now"]),
            )
        )
    return out


def test_placement_does_not_depend_on_input_order() -> None:
    items = _library(300, 1)
    expected = place(*items)
    for seed in range(3):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        assert place(*shuffled) == expected


def test_adding_items_does_not_move_existing_ones() -> None:
    items = _library(300, 2)
    before = place(*items)
    newer = [item(f"new{i:07d}", date_unix=T0 + 10 * 86400 + i, text="fresh") for i in range(20)]
    after = place(*items, *newer)
    assert {k: after[k] for k in before} == before


def test_a_new_collision_moves_only_the_colliding_item() -> None:
    old = item("abcdefgh1", date_unix=T0)
    other = item("zzzzzzzz1", date_unix=T0)
    before = place(old, other)
    after = place(old, other, item("abcdefgh2", date_unix=T0))
    assert after["zzzzzzzz1"] == before["zzzzzzzz1"]
    assert after["abcdefgh1"].stem == "14-03-27 Hello [abcdefgh1]"


# ---------------------------------------------------------------- time zones


def test_same_item_in_three_time_zones() -> None:
    it = item(date_unix=int(datetime(2026, 11, 23, 20, 30, 0, tzinfo=UTC).timestamp()))
    assert (place1(it).day, place1(it).stem[:8]) == ("2026-11-23", "20-30-00")
    tokyo = place1(it, ZoneInfo("Asia/Tokyo"))
    assert (tokyo.day, tokyo.month, tokyo.stem[:8]) == ("2026-11-24", "2026-11", "05-30-00")
    early = item(date_unix=int(datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC).timestamp()))
    la = place1(early, ZoneInfo("America/Los_Angeles"))
    assert (la.day, la.month, la.stem[:8]) == ("2026-11-30", "2026-11", "19-00-00")
    assert place1(early).month == "2026-12"


def test_dst_spring_forward() -> None:
    ny = ZoneInfo("America/New_York")
    before = item("before00", date_unix=int(datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC).timestamp()))
    after = item("after000", date_unix=int(datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC).timestamp()))
    placed = place(before, after, tz=ny)
    assert placed["before00"].stem.startswith("01-59-59 ")
    assert placed["after000"].stem.startswith("03-00-00 ")
    assert placed["before00"].day == placed["after000"].day == "2026-03-08"


def test_dst_fall_back_repeated_hour_stays_in_one_day_with_distinct_names() -> None:
    ny = ZoneInfo("America/New_York")
    first = item("firstAAAA", date_unix=int(datetime(2026, 11, 1, 5, 30, tzinfo=UTC).timestamp()))
    second = item("secondBBB", date_unix=int(datetime(2026, 11, 1, 6, 30, tzinfo=UTC).timestamp()))
    placed = place(first, second, tz=ny)
    assert placed["firstAAAA"].stem.startswith("01-30-00 ")
    assert placed["secondBBB"].stem.startswith("01-30-00 ")
    assert placed["firstAAAA"].day == placed["secondBBB"].day == "2026-11-01"
    assert placed["firstAAAA"].stem != placed["secondBBB"].stem


@pytest.mark.parametrize(
    ("date_unix", "day"),
    [
        (0, "1970-01-01"),
        (-86400, "1969-12-31"),
        (253402300799, "9999-12-29"),  # clamped to the last supported moment
        (-62135596800, "0001-01-03"),  # clamped to the first supported moment
    ],
)
def test_extreme_dates(date_unix: int, day: str) -> None:
    p = place1(item(date_unix=date_unix))
    assert p.day == day and p.month == day[:7]
    tokyo = place1(item(date_unix=date_unix), ZoneInfo("Asia/Tokyo"))  # must not overflow past 9999
    assert tokyo.day[:4] == day[:4]


# ---------------------------------------------------------------- placement paths


def test_dir_parts_relpath_and_under() -> None:
    p = place1(item(text="Hello"))
    assert p.dir_parts("by-voice") == ("Rachel", "2026-11", "2026-11-23")
    assert p.dir_parts("by-date") == ("2026-11", "2026-11-23", "Rachel")
    assert p.relpath("by-voice") == "by-voice/Rachel/2026-11/2026-11-23/14-03-27 Hello [ja9xsmfG].mp3"
    assert p.relpath("by-date", "sidecar") == "by-date/2026-11/2026-11-23/Rachel/14-03-27 Hello [ja9xsmfG].json"
    assert p.relpath("by-date", "wav") == "by-date/2026-11/2026-11-23/Rachel/14-03-27 Hello [ja9xsmfG].wav"
    assert p.under("by-voice", ())
    assert p.under("by-voice", ("Rachel", "2026-11"))
    assert p.under("by-date", ("2026-11", "2026-11-23", "Rachel"))
    assert not p.under("by-voice", ("Adam",))
    assert not p.under("by-voice", ("rachel",))
    assert not p.under("by-date", ("2026-12",))
    assert not p.under("by-nothing", ())
    assert not p.under("recent", ())
    with pytest.raises(ValueError):
        p.dir_parts("recent")
    with pytest.raises(ValueError):
        p.relpath("by-voice", "video")


def test_selection_round_trips_with_under() -> None:
    p = place1(item())
    for path in ("by-voice/Rachel/2026-11", "by-date/2026-11/2026-11-23/", "./by-voice", "by-voice//Rachel"):
        assert p.under(*split_selection(path))


# ---------------------------------------------------------------- selections


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("by-voice/Rachel/2026-11", ("by-voice", ("Rachel", "2026-11"))),
        ("by-voice/Rachel/2026-11/", ("by-voice", ("Rachel", "2026-11"))),
        ("./by-voice/Rachel", ("by-voice", ("Rachel",))),
        ("by-voice", ("by-voice", ())),
        ("by-voice/Rachel/2026-11/2026-11-23", ("by-voice", ("Rachel", "2026-11", "2026-11-23"))),
        ("by-date/2026-11/2026-11-23/Rachel", ("by-date", ("2026-11", "2026-11-23", "Rachel"))),
        ("by-voice/E\u0301mile", ("by-voice", ("\u00c9mile",))),
    ],
)
def test_split_selection(path: str, expected: tuple[str, tuple[str, ...]]) -> None:
    assert split_selection(path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/by-voice/Rachel", "relative"),
        ("by-voice/../secret", "'..'"),
        ("..", "'..'"),
        ("by-models/x", "must start with"),
        ("", "must start with"),
        ("by-voice/Rachel/2026-11/2026-11-23/extra", "too deep"),
        ("by-voice/Rachel/November", "month"),
        ("by-date/2026-13", "month"),
        ("by-date/2026-11/2026-12-01", "day folder"),
        ("by-voice/Rachel/2026-11/23", "day folder"),
    ],
)
def test_split_selection_rejects(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        split_selection(path)
    assert "\n" not in str(exc.value)


def test_names_are_nfc() -> None:
    p = place1(item(voice_name="Zoe\u0308", text="cafe\u0301"))
    assert p.voice_dir == "Zo\u00eb" and unicodedata.is_normalized("NFC", p.stem)
    assert "caf\u00e9" in p.stem
