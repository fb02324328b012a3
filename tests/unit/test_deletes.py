"""The delete journal: journal before DELETE, undo on failure, replay that never deletes twice."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.deletes import DeleteJournal
from historyfs.errors import NotFound, OutcomeUnknown, Unavailable
from historyfs.index import Index
from historyfs.models import HistoryItem
from tests.fixtures.mount import library_items


class FakeApi:
    """Remote items by id; records every call; ``fail`` makes delete raise."""

    def __init__(self, items: list[HistoryItem]) -> None:
        self.remote = {i.history_item_id: i for i in items}
        self.calls: list[tuple[str, str]] = []
        self.fail: Exception | None = None
        self.on_delete = lambda item_id: None

    def get(self, item_id: str) -> HistoryItem:
        self.calls.append(("get", item_id))
        if item_id not in self.remote:
            raise NotFound("invalid_id")
        return self.remote[item_id]

    def delete(self, item_id: str) -> None:
        self.calls.append(("delete", item_id))
        self.on_delete(item_id)
        if self.fail is not None:
            raise self.fail
        if self.remote.pop(item_id, None) is None:
            raise NotFound("invalid_id")


class FakeCache:
    def __init__(self) -> None:
        self.discarded: list[str] = []

    def discard(self, key: str) -> None:
        self.discarded.append(key)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Index, FakeApi, FakeCache, DeleteJournal, list[HistoryItem]]:
    items = library_items(10)
    index = Index(tmp_path / "i.db", ZoneInfo("UTC"))
    index.replace_all(items)
    api, cache = FakeApi(items), FakeCache()
    return index, api, cache, DeleteJournal(index, api, cache), items


def test_delete_journals_first_then_removes_everywhere(setup) -> None:  # type: ignore[no-untyped-def]
    index, api, cache, journal, items = setup
    victim = items[2].history_item_id
    seen_state: list[str | None] = []
    api.on_delete = lambda item_id: seen_state.append(journal.state(item_id))
    journal.delete(victim)
    assert seen_state == ["pending"]  # committed before the DELETE went out
    assert journal.state(victim) == "done"
    assert index.item(victim) is None and victim not in api.remote
    assert f"{victim}.mp3" in cache.discarded
    assert journal.pending() == []


def test_failed_delete_changes_nothing_and_raises(setup) -> None:  # type: ignore[no-untyped-def]
    index, api, cache, journal, items = setup
    victim = items[3].history_item_id
    api.fail = Unavailable("503")
    with pytest.raises(Unavailable):
        journal.delete(victim)
    assert index.item(victim) is not None and journal.state(victim) is None
    assert cache.discarded == []


def test_already_deleted_elsewhere_counts_as_deleted(setup) -> None:  # type: ignore[no-untyped-def]
    index, api, _, journal, items = setup
    victim = items[4].history_item_id
    del api.remote[victim]
    journal.delete(victim)
    assert index.item(victim) is None and journal.state(victim) == "done"


def test_replay_never_sends_delete_twice(setup) -> None:  # type: ignore[no-untyped-def]
    index, api, _, journal, items = setup
    reached, not_reached = items[5].history_item_id, items[6].history_item_id
    # A crash after journaling: one DELETE reached the API, the other did not.
    for item_id in (reached, not_reached):
        index.execute("INSERT INTO journal(id, state, t) VALUES (?, 'pending', 0)", (item_id,))
    del api.remote[reached]
    assert journal.replay() == 2
    assert ("delete", reached) not in api.calls
    assert api.calls.count(("delete", not_reached)) == 1
    assert index.item(reached) is None and index.item(not_reached) is None
    assert journal.pending() == []


def test_replay_keeps_pending_while_the_api_is_down(setup) -> None:  # type: ignore[no-untyped-def]
    index, api, _, journal, items = setup
    item_id = items[7].history_item_id
    index.execute("INSERT INTO journal(id, state, t) VALUES (?, 'pending', 0)", (item_id,))
    api.fail = Unavailable("down")
    assert journal.replay() == 0
    assert journal.pending() == [item_id] and index.item(item_id) is not None


def test_lost_answer_is_resolved_by_asking_not_by_repeating(setup) -> None:  # type: ignore[no-untyped-def]
    index, api, _, journal, items = setup
    took_effect, did_not = items[8].history_item_id, items[9].history_item_id

    def lose_answer(item_id: str) -> None:
        if item_id == took_effect:
            del api.remote[item_id]  # the server deleted it, then the connection dropped
        raise OutcomeUnknown("DELETE: connection failed (ReadError)")

    api.on_delete = lose_answer
    journal.delete(took_effect)
    assert api.calls.count(("delete", took_effect)) == 1 and ("get", took_effect) in api.calls
    assert index.item(took_effect) is None and journal.state(took_effect) == "done"
    with pytest.raises(OutcomeUnknown):
        journal.delete(did_not)
    assert api.calls.count(("delete", did_not)) == 1
    assert index.item(did_not) is not None and journal.state(did_not) is None
