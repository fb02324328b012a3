"""recent/, by-model/ and search/ on HistoryFS without a kernel: listings, one API search per query, probes,
expiry told to the kernel, rm/rmdir policy, --views, and one file (inode, cache) for a clip in every view."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from historyfs.core import HistoryFS, Options
from historyfs.deletes import DeleteJournal
from historyfs.errors import Unavailable
from historyfs.layout import Layout, Placement
from historyfs.models import HistoryItem
from historyfs.search import PAGE_SIZE, Searches
from tests.unit.test_core import RecordingKernel, World, _cat, _errno, world  # noqa: F401  (world is a fixture)

UTC = ZoneInfo("UTC")


class FakeLister:
    """The API's search over ``items`` (newest first, case-insensitive substring, like the fake server)."""

    def __init__(self, items: list[HistoryItem]) -> None:
        self.items = sorted(items, key=lambda i: (i.date_unix, i.history_item_id), reverse=True)
        self.calls: list[dict[str, Any]] = []
        self.fail: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def iter_items(self, page_size: int = 1000, start_after_history_item_id: str | None = None, *,
                   background: bool = False, **filters: Any) -> Iterator[HistoryItem]:
        self.calls.append({"page_size": page_size, "background": background, **filters})
        self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        words = filters["search"].lower()
        return iter([i for i in self.items if words in i.display_text.lower()])

    def matches(self, words: str) -> list[HistoryItem]:
        return [i for i in self.items if words.lower() in i.display_text.lower()]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _build(w: World, options: Options = Options(), **search_kw: Any) -> tuple[HistoryFS, Searches, FakeLister]:
    lister = FakeLister(w.items)
    searches = Searches(lister, w.index, **search_kw)
    deletes = DeleteJournal(w.index, w.api, w.fetcher.cache)  # type: ignore[arg-type]
    return HistoryFS(w.index, w.fetcher, deletes, options, searches=searches), searches, lister


def _placed(w: World) -> dict[str, Placement]:
    return Layout(UTC).place_all(w.items)


def _names(fs: HistoryFS, path: str) -> list[str]:
    return fs.readdir(path)[2:]


def _word_of(item: HistoryItem) -> str:
    """A word of the item's text that can name a folder ("" if none)."""
    return next((w for w in item.display_text.split() if "/" not in w and not w.startswith(".")), "")


def _word(w: World) -> str:
    """A word of several items' texts (not all)."""
    counts: dict[str, int] = {}
    for i in w.items:
        for word in set(i.display_text.lower().split()):
            counts[word] = counts.get(word, 0) + 1
    return max((c, word) for word, c in counts.items() if 2 <= c < len(w.items) and len(word) > 3)[1]


def test_the_root_lists_every_view(world: World) -> None:
    fs, _, lister = _build(world)
    assert fs.readdir("/") == [".", "..", ".historyfs", "by-date", "by-model", "by-voice", "recent", "search"]
    assert _names(fs, "/search") == [] and lister.calls == []


def test_a_search_folder_lists_what_the_api_finds_newest_first(world: World) -> None:
    fs, searches, lister = _build(world)
    words = _word(world)
    placed = _placed(world)
    expected = [placed[i.history_item_id].flat_name(k) for i in lister.matches(words) for k in ("audio", "sidecar")]
    assert len(expected) >= 4
    assert _names(fs, f"/search/{words}") == expected
    assert lister.calls == [{"page_size": PAGE_SIZE, "background": False, "search": words}]
    assert _names(fs, f"/search/{words}") == expected and fs.getattr(f"/search/{words}/{expected[1]}").size > 0
    assert len(lister.calls) == 1  # held for the TTL: a second listing and a stat make no API call
    assert searches.stats()["cache_misses"] == 1 and searches.stats()["cache_hits"] >= 2
    assert _names(fs, "/search") == [words]


def test_no_result_is_an_empty_folder_and_unicode_words_work(world: World) -> None:
    fs, _, lister = _build(world)
    assert _names(fs, "/search/no such words anywhere") == []
    word = next(w for i in world.items for w in i.display_text.split() if not w.isascii() and len(w) > 1)
    placed = _placed(world)
    assert _names(fs, f"/search/{word}") == [placed[i.history_item_id].flat_name(k) for i in lister.matches(word)
                                             for k in ("audio", "sidecar")]


@pytest.mark.parametrize("name", [".hidden", ".directory", "autorun.inf", "Desktop.ini", "folder.jpg", ".Trash-0"])
def test_probe_names_make_no_api_call(world: World, name: str) -> None:
    fs, searches, lister = _build(world)
    assert _errno(fs.getattr, f"/search/{name}") == errno.ENOENT
    assert lister.calls == [] and searches.stats()["probes_ignored"] == 1


def test_an_api_failure_is_an_error_and_is_not_kept(world: World) -> None:
    fs, _, lister = _build(world)
    lister.fail = Unavailable("API down")
    with pytest.raises(Unavailable):
        fs.getattr("/search/hello")
    lister.fail = None
    assert fs.getattr("/search/hello").mode & 0o040000
    assert len(lister.calls) == 2


def test_lookups_of_one_query_at_once_share_one_search(world: World) -> None:
    fs, searches, lister = _build(world)
    lister.gate.clear()
    words = _word(world)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(fs.readdir(f"/search/{words}")))) for _ in range(8)]
    for t in threads:
        t.start()
    lister.gate.set()
    for t in threads:
        t.join(10)
    assert len(lister.calls) == 1 and len(set(results)) == 1 and len(results) == 8
    assert searches.stats()["cache_hits"] == 7


def test_expired_results_are_searched_again_and_the_kernel_forgets_the_old_ones(world: World) -> None:
    clock = Clock()
    fs, searches, lister = _build(world, ttl=60, timer=clock)
    kernel = RecordingKernel()
    fs.notify = kernel
    words = _word(world)
    shown = _names(fs, f"/search/{words}")
    clock.now += 61
    kernel.paths.clear()
    assert _names(fs, f"/search/{words}") == shown
    assert len(lister.calls) == 2
    assert {f"/search/{words}", *(f"/search/{words}/{n}" for n in shown)} <= set(kernel.paths)
    assert _names(fs, "/search") == [words]  # still listed: queries stay listed for an hour
    clock.now += 3601
    assert _names(fs, "/search") == []


def test_a_sweep_tells_the_kernel_of_expiry_without_any_lookup(world: World) -> None:
    """With libfuse >= 3.16 the kernel keeps a folder's listing: no lookup may come to notice expiry."""
    clock = Clock()
    fs, searches, lister = _build(world, ttl=60, timer=clock)
    kernel = RecordingKernel()
    fs.notify = kernel
    words = _word(world)
    shown = _names(fs, f"/search/{words}")
    kernel.paths.clear()
    clock.now += 30
    searches.sweep()
    assert kernel.paths == []
    clock.now += 31
    searches.sweep()
    assert {f"/search/{words}", *(f"/search/{words}/{n}" for n in shown)} <= set(kernel.paths)
    kernel.paths.clear()
    clock.now += 3600
    searches.sweep()
    assert kernel.paths == ["/search"] and len(lister.calls) == 1


def test_rmdir_forgets_a_query_and_deletes_nothing(world: World) -> None:
    fs, _, lister = _build(world, Options(allow_delete=True))
    kernel = RecordingKernel()
    fs.notify = kernel
    words = _word(world)
    shown = _names(fs, f"/search/{words}")
    for name in shown:
        assert _errno(fs.unlink, f"/search/{words}/{name}") == errno.EPERM  # what `rm -r search/<words>` meets
    fs.rmdir(f"/search/{words}")
    assert _names(fs, "/search") == [] and world.api.calls == []
    assert {"/search", f"/search/{words}", f"/search/{words}/{shown[0]}"} <= set(kernel.paths)
    assert len(world.index) == len(world.items)


def test_rm_in_recent_is_refused_and_in_by_model_deletes_everywhere(world: World) -> None:
    fs, _, lister = _build(world, Options(allow_delete=True))
    kernel = RecordingKernel()
    fs.notify = kernel
    victim = next(i for i in lister.items if _word_of(i))  # one of the newest: in recent/ and in a search
    place = _placed(world)[victim.history_item_id]
    words = _word_of(victim)
    assert place.flat_name() in _names(fs, f"/search/{words}")
    assert _errno(fs.unlink, "/" + place.relpath("recent")) == errno.EPERM
    assert world.api.calls == []
    fs.unlink("/" + place.relpath("by-model"))
    assert world.api.calls[-1] == ("delete", victim.history_item_id)
    for view in ("by-date", "by-model", "by-voice", "recent", f"search/{words}"):
        assert _errno(fs.getattr, "/" + place.relpath(view)) == errno.ENOENT, view
    assert place.flat_name() not in _names(fs, f"/search/{words}") and place.flat_name() not in _names(fs, "/recent")
    assert {"/" + place.relpath(v) for v in ("recent", f"search/{words}", "by-model")} <= set(kernel.paths)


def test_a_clip_is_one_file_in_every_view(world: World) -> None:
    fs, _, lister = _build(world)
    item = next(i for i in lister.items[1:] if _word_of(i))
    place = _placed(world)[item.history_item_id]
    words = _word_of(item)
    paths = ["/" + place.relpath(v) for v in ("by-date", "by-model", "by-voice", "recent", f"search/{words}")]
    assert len({fs.getattr(p).ino for p in paths}) == 1
    data = {_cat(fs, p) for p in paths}
    assert data == {world.source.data[item.history_item_id]}
    assert [c for c in world.source.calls if c[0] == item.history_item_id] == [(item.history_item_id, None)]


def test_recent_lists_newest_first(world: World) -> None:
    fs, _, lister = _build(world)
    placed = _placed(world)
    assert _names(fs, "/recent") == [placed[i.history_item_id].flat_name(k) for i in lister.items for k in ("audio", "sidecar")]


def test_views_shows_only_the_views_asked_for(world: World) -> None:
    fs, _, lister = _build(world, Options(views=("by-date",)))
    assert fs.readdir("/") == [".", "..", ".historyfs", "by-date"]
    item = world.items[0]
    for view in ("by-voice", "by-model", "recent", "search/hello"):
        assert _errno(fs.getattr, "/" + _placed(world)[item.history_item_id].relpath(view)) == errno.ENOENT
    assert lister.calls == []
    assert fs.getattr(world.path(item)).nlink == 1


def test_results_the_index_does_not_know_yet_refresh_it(world: World) -> None:
    late = next(i for i in reversed(world.items) if _word_of(i))
    world.index.remove(late.history_item_id)  # as if listed after the last refresh
    refreshed: list[bool] = []

    def refresh() -> bool:
        refreshed.append(True)
        world.index.merge([late])
        return True

    fs, _, _ = _build(world, refresh=refresh)
    word = _word_of(late)
    assert _placed(world)[late.history_item_id].flat_name() in _names(fs, f"/search/{word}")
    assert refreshed == [True]


def test_reading_a_search_result_reads_ahead_in_its_order(world: World) -> None:
    fs, _, lister = _build(world)
    words = _word(world)
    names = [n for n in _names(fs, f"/search/{words}") if not n.endswith(".json")]
    for name in names[:3]:
        assert _cat(fs, f"/search/{words}/{name}")
    assert world.fetcher.wait_idle(10)
    wanted = {i.history_item_id for i in lister.matches(words)[:5]}
    assert wanted <= {c[0] for c in world.source.calls}
