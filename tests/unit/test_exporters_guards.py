"""exporters.guards: pure checks, no server."""

from __future__ import annotations

from datetime import timezone

import pytest

from exporters.guards import DEFAULT_MAX_DELETE, check_max_delete, check_names, delete_refusal
from exporters.select import Criteria
from historyfs.errors import ConfigError
from historyfs.layout import Layout
from historyfs.models import HistoryItem


def _items() -> list[HistoryItem]:
    rows = [("a1", "Rachel", "v_rachel", "eleven_v2", "TTS"), ("a2", "Adam", "v_adam", "eleven_v2", "STS"), ("a3", "Rachel", "v_rachel", "eleven_v3", "TTS")]
    return [
        HistoryItem.from_json({"history_item_id": f"{i}AAAAAAAAAAAAAAAAA", "date_unix": 1_790_000_000 + n * 86400 * 40, "voice_name": name, "voice_id": vid, "model_id": model, "source": source, "content_type": "audio/mpeg"})
        for n, (i, name, vid, model, source) in enumerate(rows)
    ]


def _check(**criteria: object) -> None:
    items = _items()
    check_names(Criteria(**criteria), items, Layout(timezone.utc).place_all(items))  # type: ignore[arg-type]


def test_existing_folders_models_and_sources_pass() -> None:
    _check(view="by-voice", folder=("Rachel", "2026-09"), model="eleven_v3", source="STS")
    _check(view="by-date", folder=("2026-09",))


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"view": "by-voice", "folder": ("Rachl",)}, "no folder by-voice/Rachl in the history (did you mean by-voice/Rachel?)"),
        ({"view": "by-voice", "folder": ("rachel",)}, "did you mean by-voice/Rachel?"),
        ({"view": "by-voice", "folder": ("Zed",)}, "(by-voice holds Adam, Rachel)"),
        ({"view": "by-voice", "folder": ("Adam", "2026-09")}, "no folder by-voice/Adam/2026-09 in the history (did you mean by-voice/Adam/2026-10?)"),
        ({"view": "by-date", "folder": ("2026-10", "2026-10-30")}, "(did you mean by-date/2026-10/2026-10-31?)"),
        ({"model": "eleven_v9"}, "no item with model 'eleven_v9' in the history (did you mean eleven_v"),
        ({"model": "turbo"}, "(known: eleven_v2, eleven_v3)"),
        ({"source": "Flows"}, "no item with source 'Flows' in the history (known: STS, TTS)"),
    ],
)
def test_a_name_that_matches_nothing_says_what_exists(criteria: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _check(**criteria)
    assert message in str(err.value)


def test_delete_refusals() -> None:
    assert delete_refusal(selected=10, deletes=0, max_delete=0) is None
    assert delete_refusal(selected=10, deletes=DEFAULT_MAX_DELETE, max_delete=DEFAULT_MAX_DELETE) is None
    assert "more than --max-delete 100" in str(delete_refusal(selected=10, deletes=101, max_delete=100))
    assert "empty selection" in str(delete_refusal(selected=0, deletes=2, max_delete=1000))
    assert delete_refusal(selected=0, deletes=0, max_delete=0) is None
    with pytest.raises(ConfigError, match="bad --max-delete -1"):
        check_max_delete(-1)
