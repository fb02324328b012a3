"""Property tests: any JSON the API might send parses into an item or fails with MalformedResponse, nothing else."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from historyfs.errors import MalformedResponse
from historyfs.models import HistoryItem, HistoryPage

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)

FIELDS = [
    "history_item_id",
    "date_unix",
    "content_type",
    "voice_id",
    "voice_name",
    "voice_category",
    "model_id",
    "text",
    "source",
    "state",
    "request_id",
    "output_format",
    "character_count_change_from",
    "character_count_change_to",
    "dialogue",
    "settings",
    "alignments",
    "feedback",
]

items = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=12)
good_items = st.fixed_dictionaries(
    {"history_item_id": st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s), "date_unix": st.integers(0, 253402300799)},
    optional={k: json_values for k in FIELDS[2:]},
)


@settings(max_examples=300, deadline=None)
@given(items)
def test_any_item_json_parses_or_is_malformed(d: dict) -> None:
    try:
        item = HistoryItem.from_json(d)
    except MalformedResponse as exc:
        assert str(exc)
        return
    assert isinstance(item.history_item_id, str) and item.history_item_id
    assert isinstance(item.date_unix, int) and isinstance(item.content_type, str)
    assert isinstance(item.display_text, str)


@settings(max_examples=200, deadline=None)
@given(good_items)
def test_well_formed_items_round_trip_through_the_sidecar(d: dict) -> None:
    item = HistoryItem.from_json(d)
    assert json.loads(item.to_json_bytes()) == json.loads(json.dumps(d))
    assert item.to_json() == HistoryItem.from_json(item.to_json()).to_json()
    for opt in ("voice_id", "voice_name", "text", "model_id", "source"):
        assert getattr(item, opt) is None or isinstance(getattr(item, opt), str)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["history", "has_more", "last_history_item_id", "scanned_until"]) | st.text(max_size=5), json_values | st.lists(items, max_size=3)))
def test_any_page_json_parses_or_is_malformed(d: dict) -> None:
    try:
        page = HistoryPage.from_json(d)
    except MalformedResponse:
        return
    assert isinstance(page.has_more, bool) and all(isinstance(i, HistoryItem) for i in page.items)


def test_item_is_immutable_and_raw_is_read_only() -> None:
    item = HistoryItem.from_json({"history_item_id": "a", "date_unix": 1, "settings": {"stability": 0.5}, "dialogue": [{"text": "hi", "voice_id": "v", "voice_name": "n"}]})
    try:
        item.text = "x"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("HistoryItem must be frozen")
    try:
        item.raw["settings"]["stability"] = 1  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("raw must be read-only")
    assert item.to_json()["settings"] == {"stability": 0.5}
    assert item.is_dialogue and item.display_text == "hi"
