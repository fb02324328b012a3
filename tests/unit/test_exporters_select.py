"""exporters.select: dates, voice resolution, server-side vs client-side filters."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from exporters.select import Criteria, Selection, Window, parse_window, resolve, resolve_voices
from historyfs.errors import ConfigError
from historyfs.layout import Layout
from historyfs.models import HistoryItem

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def item(n: int, voice_id: str | None = "v1", voice_name: str | None = "Rachel", date: int = 1_790_000_000, **kw: object) -> HistoryItem:
    d = {"history_item_id": f"item{n:016d}", "date_unix": date, "content_type": "audio/mpeg", "voice_id": voice_id, "voice_name": voice_name, "text": f"t{n}", **kw}
    return HistoryItem.from_json(d)


def ts(text: str, tz: ZoneInfo = UTC) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp())


def test_days_are_whole_days_in_the_time_zone() -> None:
    w = parse_window("2026-11-01", "2026-11-30", PARIS)
    assert w == Window(ts("2026-11-01T00:00", PARIS), ts("2026-12-01T00:00", PARIS))
    assert w.contains(ts("2026-11-30T23:59:59", PARIS)) and not w.contains(ts("2026-12-01T00:00", PARIS))
    assert not w.contains(ts("2026-10-31T23:59:59", PARIS))


def test_iso_instants_are_inclusive_to_the_second() -> None:
    w = parse_window("2026-11-01T10:00:00+00:00", "2026-11-01T12:00:00Z", PARIS)
    assert w.contains(ts("2026-11-01T10:00")) and w.contains(ts("2026-11-01T12:00"))
    assert not w.contains(ts("2026-11-01T12:00") + 1) and not w.contains(ts("2026-11-01T10:00") - 1)


def test_naive_iso_is_in_the_time_zone() -> None:
    assert parse_window("2026-07-01T08:00", None, PARIS).after == ts("2026-07-01T06:00")


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [("2026-02-30", None, "bad date for --since"), (None, "soon", "bad date for --until"), ("2026-11-02", "2026-11-01", "not before"), ("9999-12-31", None, None)],
)
def test_bad_dates(since: str | None, until: str | None, message: str | None) -> None:
    if message is None:
        assert parse_window(since, until, UTC).after is not None
        with pytest.raises(ConfigError, match="--until"):
            parse_window(None, "9999-12-31", UTC)
        return
    with pytest.raises(ConfigError, match=message):
        parse_window(since, until, UTC)


def test_voice_names_resolve_case_insensitively_and_ids_exactly() -> None:
    items = [item(1, "v1", "Rachel"), item(2, "v2", "rachel"), item(3, "v3", "Adam"), item(4, None, None, dialogue=[{"text": "hi", "voice_id": "v3", "voice_name": "Adam"}])]
    places = Layout(UTC).place_all(items)
    assert resolve_voices(["RACHEL"], items, places) == (frozenset({"v1", "v2"}), frozenset())
    assert resolve_voices(["v3"], items, places) == (frozenset({"v3"}), frozenset())
    assert resolve_voices(["dialogue"], items, places) == (frozenset(), frozenset({"Dialogue"}))
    with pytest.raises(ConfigError, match="no voice named 'Nobody'"):
        resolve_voices(["Nobody"], items, places)
    with pytest.raises(ConfigError):
        resolve_voices(["V3"], [item(3, "v3", "Adam")], places)  # ids are exact


def test_server_filters_carry_one_voice_only() -> None:
    one = Criteria(voice_ids=frozenset({"v1"}), model="m", source="TTS", search="hi", window=Window(5, 10))
    assert one.server_filters() == {"voice_id": "v1", "model_id": "m", "source": "TTS", "search": "hi", "date_after_unix": 5, "date_before_unix": 10}
    two = Criteria(voice_ids=frozenset({"v1", "v2"}))
    assert two.server_filters() == {}
    assert Criteria(voice_ids=frozenset({"v1"}), voice_dirs=frozenset({"Dialogue"})).server_filters() == {}


def test_client_side_checks_and_path() -> None:
    items = [item(1, date=ts("2026-11-03T10:00")), item(2, "v2", "Adam", date=ts("2026-11-03T10:00")), item(3, date=ts("2026-12-01T10:00"), model_id="m2")]
    places = Layout(UTC).place_all(items)
    crit = resolve(Selection(voices=("Rachel", "Adam"), path="by-voice/Rachel/2026-11"), UTC, items, places)
    assert [i.history_item_id[-1] for i in items if crit.matches(i, places[i.history_item_id])] == ["1"]
    crit = resolve(Selection(model="m2"), UTC, items, places)
    assert [i.history_item_id[-1] for i in items if crit.matches(i, places[i.history_item_id])] == ["3"]
    assert resolve(Selection(path="by-date/2026-11"), UTC, items, places).view == "by-date"


def test_bad_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve(Selection(path="by-voice/Rachel/Nov"), UTC, [], {})


def test_path_of_the_new_views_selects_what_the_mount_shows_there() -> None:
    items = [item(n, date=ts("2026-11-03T10:00") + n, model_id="m2" if n % 2 else "m1") for n in range(150)]
    places = Layout(UTC).place_all(items)

    def chosen(sel: Selection) -> list[int]:
        crit = resolve(sel, UTC, items, places)
        return [int(i.history_item_id[4:]) for i in items if crit.matches(i, places[i.history_item_id])]

    assert chosen(Selection(path="by-model/m2/2026-11")) == list(range(1, 150, 2))
    assert chosen(Selection(path="recent")) == list(range(50, 150))  # the mount's 100 newest
    crit = resolve(Selection(path="search/hello world"), UTC, items, places)
    assert crit.server_filters() == {"search": "hello world"} and crit.view == "search/hello world"
    assert places[items[0].history_item_id].relpath(crit.view).startswith("search/hello world/2026-11-03 10-00-00 Rachel - ")


def test_two_different_searches_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="two searches"):
        resolve(Selection(search="a", path="search/b"), UTC, [], {})
    assert resolve(Selection(search="a", path="search/a"), UTC, [], {}).search == "a"
