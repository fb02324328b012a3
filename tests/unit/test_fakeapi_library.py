"""The fake's library without HTTP: seeded generation, listing semantics, add/delete, --state."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historyfs.fakeapi import Library
from historyfs.fakeapi import catalog, generate, state
from historyfs.fakeapi.query import ListQuery
from tests.fixtures.fake_api import expected_listing, page_through

LIB = Library(items=300, seed=7)
ITEMS = LIB.items()


def test_same_seed_same_library_and_other_seed_differs() -> None:
    assert Library(items=60, seed=3).items() == Library(items=60, seed=3).items()
    assert Library(items=60, seed=3).items() != Library(items=60, seed=4).items()


def test_ids_are_unique_20_char_alphanumeric() -> None:
    ids = [d["history_item_id"] for d in ITEMS]
    assert len(set(ids)) == len(ids) == 300
    assert all(re.fullmatch(r"[A-Za-z0-9]{20}", i) for i in ids)
    assert all(re.fullmatch(r"[A-Za-z0-9]{20}", d["request_id"]) for d in ITEMS)


def test_newest_first_over_about_six_months_before_the_anchor() -> None:
    dates = [d["date_unix"] for d in ITEMS]
    assert dates == sorted(dates, reverse=True)
    assert dates[0] < generate.ANCHOR_UNIX
    assert 150 * 86400 < dates[0] - dates[-1] <= generate.SPAN_SECONDS
    assert max(Counter(dates).values()) >= 2, "some items share a second"


def test_every_hard_voice_name_is_present() -> None:
    names = {d["voice_name"] for d in ITEMS}
    assert {v.name for v in catalog.VOICES} <= names
    assert any(len(n.encode()) > 255 for n in names if n)
    narrators = {d["voice_id"] for d in ITEMS if d["voice_name"] == "Narrator"}
    assert len(narrators) == 2, "two different voices share one name"
    assert {d["voice_category"] for d in ITEMS} >= {"premade", "cloned", "generated", "professional"}


def test_models_sources_formats_and_dialogues() -> None:
    assert {d["model_id"] for d in ITEMS} >= {"eleven_multilingual_v2", "eleven_turbo_v2_5", "eleven_flash_v2_5", "eleven_v3", "eleven_english_sts_v2"}
    sources = Counter(d["source"] for d in ITEMS)
    assert sources.most_common(1)[0][0] == "TTS" and len(sources) >= 5
    wavs = [d for d in ITEMS if d["content_type"] == "audio/wav"]
    assert wavs and all(d["output_format"].startswith("pcm_") for d in wavs)
    assert all(d["content_type"] == "audio/mpeg" for d in ITEMS if d not in wavs)
    dialogues = [d for d in ITEMS if d["dialogue"]]
    assert dialogues and all(d["voice_id"] is None and len(d["dialogue"]) >= 2 for d in dialogues)
    assert all(set(line) == {"text", "voice_id", "voice_name"} for d in dialogues for line in d["dialogue"])


def test_texts_cover_every_length_and_the_special_cases() -> None:
    lengths = [len(d["text"]) for d in ITEMS if d["text"] is not None]
    assert min(lengths) == 1 and max(lengths) >= 2000
    texts = {d["text"] for d in ITEMS}
    assert set(catalog.SPECIAL_TEXTS) <= texts
    assert any("\n" in t for t in texts if t)


def test_character_counters_are_consistent() -> None:
    for d in ITEMS:
        cost = len(d["text"] or "") + sum(len(x["text"]) for x in d["dialogue"] or [])
        assert d["character_count_change_to"] - d["character_count_change_from"] == cost
    asc = ITEMS[::-1]
    assert all(a["character_count_change_to"] == b["character_count_change_from"] for a, b in zip(asc, asc[1:]))


def test_audio_sizes_spread_with_a_few_long_ones() -> None:
    sizes = [r.audio()[1] for r in LIB.snapshot().order]
    assert sum(30e3 <= s <= 600e3 for s in sizes) > len(sizes) * 0.8
    assert any(1e6 <= s <= 5.5e6 for s in sizes)
    assert 1 <= sum(s >= 10e6 for s in sizes) <= 3
    assert max(r.audio()[1] for r in Library(items=150, seed=7).snapshot().order) < 10e6


def _pages(lib: Library, page_size: int, **params: object) -> list[dict]:
    def get(cursor: str | None) -> tuple[list[dict], bool, str | None]:
        page, more = lib.page(ListQuery(page_size=page_size, start_after_history_item_id=cursor, **params))  # type: ignore[arg-type]
        return [r.to_json() for r in page], more, page[-1].history_item_id if page else None

    return page_through(get)


@pytest.mark.parametrize("page_size", [1, 7, 100, 1000])
@pytest.mark.parametrize("direction", ["desc", "asc"])
def test_paging_unfiltered_matches_brute_force(page_size: int, direction: str) -> None:
    assert _pages(LIB, page_size, sort_direction=direction) == expected_listing(ITEMS, sort_direction=direction)


_DATES = [d["date_unix"] for d in ITEMS]
filters = st.fixed_dictionaries({}, optional={
    "voice_id": st.sampled_from([v.voice_id for v in catalog.VOICES] + ["nope"]),
    "model_id": st.sampled_from([m for m, _ in catalog.TTS_MODELS] + [catalog.STS_MODEL]),
    "source": st.sampled_from(catalog.ALL_SOURCES),
    "date_before_unix": st.sampled_from(_DATES) | st.integers(_DATES[-1] - 10, _DATES[0] + 10),
    "date_after_unix": st.sampled_from(_DATES) | st.integers(_DATES[-1] - 10, _DATES[0] + 10),
    "sort_direction": st.sampled_from(["asc", "desc"]),
    "search": st.sampled_from(["the", "CAFÉ", "声音", "a", "\n", "zzz-none"]),
})


@settings(max_examples=150, deadline=None)
@given(params=filters, page_size=st.integers(1, 40))
def test_paging_with_any_filter_combination_matches_brute_force(params: dict, page_size: int) -> None:
    assert _pages(LIB, page_size, **params) == expected_listing(ITEMS, **params)


def test_empty_page_and_has_more_exactly_at_the_end() -> None:
    page, more = LIB.page(ListQuery(page_size=300))
    assert len(page) == 300 and more is False
    page, more = LIB.page(ListQuery(page_size=299))
    assert more is True
    assert LIB.page(ListQuery(voice_id="nope")) == ([], False)


def test_unknown_cursor_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        LIB.page(ListQuery(start_after_history_item_id="X" * 20))


def test_delete_hides_the_item_and_a_deleted_cursor_still_resumes() -> None:
    lib = Library(items=30, seed=5)
    before = [d["history_item_id"] for d in lib.items()]
    lib.delete(before[9])
    assert before[9] not in [d["history_item_id"] for d in lib.items()] and len(lib) == 29
    with pytest.raises(KeyError):
        lib.get(before[9])
    with pytest.raises(KeyError):
        lib.delete(before[9])
    page, _ = lib.page(ListQuery(page_size=2, start_after_history_item_id=before[9]))
    assert [r.history_item_id for r in page] == before[10:12]
    page, _ = lib.page(ListQuery(page_size=2, start_after_history_item_id=before[9], sort_direction="asc"))
    assert [r.history_item_id for r in page] == before[8:6:-1]


def test_add_item_is_newest_and_takes_overrides() -> None:
    lib = Library(items=10, seed=5)
    new = lib.add_item(text="fresh clip", voice_name="AC/DC Narrator", custom_field=1, audio_size=200_000)
    assert lib.items()[0] == new == lib.get(new["history_item_id"])
    assert new["text"] == "fresh clip" and new["voice_name"] == "AC/DC Narrator" and new["custom_field"] == 1
    assert 190_000 < len(lib.audio_bytes(new["history_item_id"])) < 210_000
    old = lib.add_item(date_unix=1000)
    assert lib.items()[-1] == old
    with pytest.raises(ValueError):
        lib.add_item(history_item_id=new["history_item_id"])


def test_add_dialogue_item_clears_the_single_voice() -> None:
    lib = Library(items=3, seed=5)
    d = lib.add_item(dialogue=[{"text": "Hi", "voice_id": "v1", "voice_name": "A"}, {"text": "Yo", "voice_id": "v2", "voice_name": "B"}])
    assert d["voice_id"] is None and d["text"] is None and d["dialogue"][1]["text"] == "Yo"


def test_state_file_persists_deletes_and_additions(tmp_path) -> None:
    path = tmp_path / "state.json"
    lib = Library(items=20, seed=9)
    state.attach(path, lib)
    gone = lib.items()[3]["history_item_id"]
    lib.delete(gone)
    added = lib.add_item(text="kept across restarts")
    doc = json.loads(path.read_text())
    assert doc["deleted"] == [gone] and doc["added"][0]["history_item_id"] == added["history_item_id"]
    again = Library(items=20, seed=9)
    state.attach(path, again)
    assert again.items() == lib.items()
    assert again.audio_bytes(added["history_item_id"]) == lib.audio_bytes(added["history_item_id"])
    assert not list(tmp_path.glob(".fakeapi-state.*")), "no temporary file left behind"


@pytest.mark.parametrize("content", ["{bad json", '{"version": 99}', '{"version": 1, "added": [{"x": 1}]}'])
def test_a_bad_state_file_is_a_clear_error(tmp_path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(state.StateError, match="state file"):
        state.attach(path, Library(items=3, seed=1))
