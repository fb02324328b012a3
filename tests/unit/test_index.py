"""The persistent tree: layout placement in every view, recent/, persistence, incremental merge, full resync."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.errors import Unavailable
from historyfs.index import Changes, Index, Slim
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.mount import library_items

UTC = ZoneInfo("UTC")


def _files(index: Index, view: str) -> set[str]:
    """Every item file of a view as 'view/a/b/c/stem+ext'."""
    out = set()
    top = index.folder((view,))
    assert top is not None
    for a, fa in top.dirs.items():
        for b, fb in fa.dirs.items():
            for c, fc in fb.dirs.items():
                out |= {f"{view}/{a}/{b}/{c}/{stem}{s.ext}" for stem, s in fc.files.items()}
    return out


def _expected(items: list[HistoryItem], view: str) -> set[str]:
    return {p.relpath(view) for p in Layout(UTC).place_all(items).values()}


@pytest.fixture
def items() -> list[HistoryItem]:
    return library_items(40)


def test_tree_matches_layout_in_every_tree_view(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    assert index.replace_all(items) == (40, 0)
    assert len(index) == 40
    for view in ("by-date", "by-model", "by-voice"):
        assert _files(index, view) == _expected(items, view)


def test_folders_carry_the_newest_date_below(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items)
    assert index.root.mtime == max(i.date_unix for i in items)
    month = index.folder(("by-date",))
    assert month is not None
    for name, folder in month.dirs.items():
        assert folder.mtime == max(i.date_unix for i in items if Layout(UTC).place_all([i])[i.history_item_id].month == name)


def test_reload_shows_the_same_tree_and_sizes_without_listing(tmp_path: Path, items: list[HistoryItem]) -> None:
    first = Index(tmp_path / "i.db", UTC, "acct")
    first.replace_all(items)
    first.set_size(items[0].history_item_id + ".mp3", 12345)
    first.close()
    again = Index(tmp_path / "i.db", UTC, "acct")
    assert again.load() == 40
    assert _files(again, "by-voice") == _expected(items, "by-voice")
    assert again.size(items[0].history_item_id + ".mp3") == 12345
    assert again.sidecar(items[3].history_item_id) == items[3].to_json_bytes()


def test_another_account_starts_empty(tmp_path: Path, items: list[HistoryItem]) -> None:
    first = Index(tmp_path / "i.db", UTC, "acct-a")
    first.replace_all(items)
    first.close()
    assert Index(tmp_path / "i.db", UTC, "acct-b").load() == 0


def test_merge_adds_only_new_items(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items[:30])
    assert index.merge(items[25:]) == 10
    assert _files(index, "by-date") == _expected(items, "by-date")


def test_full_resync_drops_items_deleted_elsewhere(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items)
    assert index.replace_all(items[5:]) == (0, 5)
    assert index.item(items[0].history_item_id) is None
    assert _files(index, "by-voice") == _expected(items[5:], "by-voice")
    assert Index(tmp_path / "i.db", UTC).load() == 35


def test_a_listing_failing_part_way_removes_nothing(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items[:20])

    def broken() -> Iterator[HistoryItem]:
        yield from items[10:25]
        raise Unavailable("connection reset")

    with pytest.raises(Unavailable):
        index.replace_all(broken())
    assert len(index) == 25  # the 5 new ones were real; nothing was dropped
    assert _files(index, "by-date") == _expected(items[:25], "by-date")


def test_remove_prunes_emptied_folders_in_both_views(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items)
    victim = index.item(items[7].history_item_id)
    assert isinstance(victim, Slim)
    day = ("by-date", *victim.dir_parts("by-date"))
    siblings = [s for s in index.ids() if index.item(s).dir_parts("by-date") == victim.dir_parts("by-date")]  # type: ignore[union-attr]
    for item_id in siblings:
        index.remove(item_id)
    assert index.folder(day) is None
    assert index.folder(("by-voice", *victim.dir_parts("by-voice"))) is None
    assert _files(index, "by-voice") == _expected([i for i in items if i.history_item_id not in siblings], "by-voice")
    assert index.folder(("by-date",)) is not None


def test_following_walks_in_sorted_depth_first_order(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items)
    ordered = sorted(_files(index, "by-date"))
    first = index.item(next(i.history_item_id for i in items
                            if Layout(UTC).place_all(items)[i.history_item_id].relpath("by-date") == ordered[0]))
    assert first is not None
    nxt = index.following("by-date", first, 5)
    assert [f"by-date/{'/'.join(s.dir_parts('by-date'))}/{s.stem}{s.ext}" for s in nxt] == ordered[1:6]


def test_slim_records_hold_no_raw_json(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items)
    slim = index.item(items[0].history_item_id)
    assert slim is not None and not hasattr(slim, "__dict__")
    assert len(slim.display_text) <= 100
    assert index.sidecar_size(slim) == len(items[0].to_json_bytes())


def test_listed_items_are_served_before_the_writer_stores_them(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    with index._db_lock:  # the writer thread cannot store anything while this is held
        index.replace_all(items[:5])
        assert {i.history_item_id for i in items[:5]} == index.ids()  # in the tree already
        assert index._writes.unfinished_tasks == 1
    slim = index.item(items[0].history_item_id)
    assert slim is not None
    assert index.sidecar_size(slim) == len(items[0].to_json_bytes())  # waited for the writer
    assert index.sidecar(items[0].history_item_id) == items[0].to_json_bytes()
    index.close()
    assert Index(tmp_path / "i.db", UTC).load() == 5  # stored before close returned


def test_a_delete_waits_for_the_pending_insert(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC)
    index.replace_all(items[:3])
    index.remove(items[0].history_item_id)
    index.close()
    again = Index(tmp_path / "i.db", UTC)
    assert again.load() == 2 and items[0].history_item_id not in again.ids()


def _recent(index: Index) -> list[str]:
    folder = index.folder(("recent",))
    assert folder is not None
    return [s.history_item_id for s in folder.files.values()]


def test_recent_holds_the_newest_newest_first_under_their_flat_names(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC, recent=5)
    index.replace_all(items)
    newest = sorted(items, key=lambda i: (i.date_unix, i.history_item_id), reverse=True)[:5]
    assert _recent(index) == [i.history_item_id for i in newest]
    placed = Layout(UTC).place_all(items)
    folder = index.folder(("recent",))
    assert folder is not None and set(folder.files) == {placed[i.history_item_id].flat_stem for i in newest}


def test_recent_takes_new_items_and_reports_those_pushed_out(tmp_path: Path, items: list[HistoryItem]) -> None:
    changes: list[Changes] = []
    index = Index(tmp_path / "i.db", UTC, on_change=changes.append, recent=3)
    index.replace_all(items)
    oldest_of_three = _recent(index)[-1]
    new = HistoryItem.from_json({**items[0].to_json(), "history_item_id": "NEWITEM0000000000009", "date_unix": 1_990_000_000})
    index.merge([new])
    assert _recent(index)[0] == "NEWITEM0000000000009" and oldest_of_three not in _recent(index)
    slim = index.item(oldest_of_three)
    assert slim is not None and slim.placement in changes[-1].left  # the kernel must drop its recent/ name


def test_removing_a_recent_item_lets_the_next_newest_in(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC, recent=3)
    index.replace_all(items)
    before = _recent(index)
    fourth = sorted(items, key=lambda i: (i.date_unix, i.history_item_id), reverse=True)[3].history_item_id
    index.remove(before[0])
    assert _recent(index) == [*before[1:], fourth]


def test_only_the_views_asked_for_are_built(tmp_path: Path, items: list[HistoryItem]) -> None:
    index = Index(tmp_path / "i.db", UTC, views=("by-date",))
    index.replace_all(items)
    assert set(index.root.dirs) == {"by-date"}
    assert index.folder(("recent",)) is None


def test_an_index_from_before_by_model_gets_its_models_from_the_sidecars(tmp_path: Path, items: list[HistoryItem]) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:  # the schema as it was before by-model
        con.execute("CREATE TABLE items (id TEXT PRIMARY KEY, date_unix INTEGER NOT NULL, content_type TEXT NOT NULL,"
                    " voice_id TEXT, voice_name TEXT, is_dialogue INTEGER NOT NULL, display_text TEXT NOT NULL,"
                    " sidecar BLOB NOT NULL)")
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(i.history_item_id, i.date_unix, i.content_type, i.voice_id, i.voice_name, int(i.is_dialogue),
                          i.display_text, i.to_json_bytes()) for i in items])
    index = Index(db, UTC)
    assert index.load() == 40
    assert {i.history_item_id: index.item(i.history_item_id).model_id for i in items} == {  # type: ignore[union-attr]
        i.history_item_id: i.model_id for i in items}
    assert _files(index, "by-model") == _expected(items, "by-model")
