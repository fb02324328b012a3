"""The destination contract suite, shipped for plugin authors (as fsspec ships its abstract tests).

Every destination - the built-ins and any plugin - must pass it. It needs pytest. Use it from a
plugin's own tests by subclassing the mixin and giving it one fixture, ``harness``::

    import pytest
    from exporters.testing import DestinationContract

    class TestMyDestination(DestinationContract):
        @pytest.fixture
        def harness(self, tmp_path):
            return MyHarness(tmp_path)   # a fresh, empty destination for each test

The harness (``Harness`` below) opens new destination objects on ONE storage, initially empty,
and reads and writes that storage directly, behind the destination's back:

    harness.open() -> Destination                 # a new object on the same storage (as a new run would make)
    harness.read(key) -> bytes | None             # the object stored under key, None if absent
    harness.write_foreign(key, data) -> None      # store an object as another program would
    harness.recovers: bool = True                 # optional: False if the destination records nothing per
                                                  # object (scan/describe give no item id and sha256)

Each test wraps ``harness.open()`` in ``exporters.Exporter`` as a run does. docs/PLUGINS.md tells more.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Protocol

import pytest

from .base import Cancelled, Destination, DestinationError, ItemUpload
from .exporter import Exporter
from .manifest import MANIFEST_KEY, Entry

__all__ = ["DestinationContract", "Harness", "audio_of", "failing_chunks", "upload"]

ODD_KEY = "by-voice/Zoë ／ x/2026-11/2026-11-23/14-03-27 Hi: it's [ab] é #1 %20.mp3"


class Harness(Protocol):
    """What a destination's test provides (see the module docstring)."""

    def open(self) -> Destination: ...
    def read(self, key: str) -> bytes | None: ...
    def write_foreign(self, key: str, data: bytes) -> None: ...


def audio_of(item_id: str, size: int = 3000) -> bytes:
    """Deterministic distinct bytes per item."""
    seed = hashlib.sha256(item_id.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


DATE = datetime(2026, 11, 23, 14, 3, 27, tzinfo=timezone.utc)


def upload(item_id: str, audio: bytes | None = None, *, key: str | None = None, chunk: int = 1000, fmt: str = "mp3") -> ItemUpload:
    """An item as the runner would hand it over: its audio in ``chunk``-byte chunks, a small sidecar, a date and metadata."""
    data = audio_of(item_id) if audio is None else audio
    base = key or f"by-voice/Rachel/2026-11/2026-11-23/14-03-27 Hello [{item_id[:8]}].mp3"
    stem = base.rsplit(".", 1)[0]
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    sidecar = f'{{"history_item_id": "{item_id}"}}\n'.encode()
    return ItemUpload(item_id, base, stem + ".json", chunks, sidecar, "audio/mpeg", fmt, date=DATE, metadata={"voice": "Rachel", "text": "Hello"})


def failing_chunks(good: int) -> Iterator[bytes]:
    for _ in range(good):
        yield b"x" * 1000
    raise OSError("stream broke")


def reopen(harness: Harness) -> Exporter:
    """A new Exporter over a new destination object on the harness's storage (as the next run)."""
    return Exporter(harness.open())


class DestinationContract:
    """Mixin: subclass it with a ``harness`` fixture; every test must pass for every destination."""

    @pytest.fixture
    def exporter(self, harness: Harness) -> Iterator[Exporter]:
        exp = reopen(harness)
        try:
            yield exp
        finally:
            exp.close()

    def test_declares_a_scheme(self, exporter: Exporter) -> None:
        scheme = type(exporter.destination).scheme
        assert isinstance(scheme, str) and scheme and scheme == scheme.lower()

    def test_fresh_destination_holds_nothing(self, exporter: Exporter) -> None:
        exporter.check()
        assert exporter.listing() == {}

    def test_put_item_stores_audio_and_sidecar_and_lists_them(self, harness: Harness, exporter: Exporter) -> None:
        up = upload("itemAAAAAAAAAAAAAAAA")
        audio = audio_of("itemAAAAAAAAAAAAAAAA")
        exporter.prepare()
        entries = exporter.put_item(up)
        held = exporter.listing()
        assert held[up.audio_key].item_id == "itemAAAAAAAAAAAAAAAA"
        assert held[up.audio_key].sha256 == hashlib.sha256(audio).hexdigest()
        assert held[up.audio_key].size == len(audio) and held[up.audio_key].format == "mp3"
        assert held[up.sidecar_key].size == len(up.sidecar)
        assert entries == [held[up.audio_key], held[up.sidecar_key]]
        assert harness.read(up.audio_key) == audio
        assert harness.read(up.sidecar_key) == up.sidecar

    def test_listing_survives_close_and_reopen(self, harness: Harness, exporter: Exporter) -> None:
        up = upload("itemBBBBBBBBBBBBBBBB")
        exporter.prepare()
        exporter.put_item(up)
        before = exporter.listing()
        exporter.close()
        again = reopen(harness)
        try:
            assert again.listing() == before
            assert set(before) == {up.audio_key, up.sidecar_key}
        finally:
            again.close()

    def test_manifest_is_not_listed(self, harness: Harness, exporter: Exporter) -> None:
        exporter.prepare()
        exporter.put_item(upload("itemCCCCCCCCCCCCCCCC"))
        exporter.flush()
        assert harness.read(MANIFEST_KEY) is not None
        assert MANIFEST_KEY not in exporter.listing()

    def test_many_small_chunks_are_reassembled(self, harness: Harness, exporter: Exporter) -> None:
        data = audio_of("itemDDDDDDDDDDDDDDDD", 200_000)
        up = upload("itemDDDDDDDDDDDDDDDD", data, chunk=997)
        exporter.prepare()
        exporter.put_item(up)
        assert harness.read(up.audio_key) == data

    def test_a_local_file_as_the_audio(self, harness: Harness, exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> None:
        data = audio_of("itemNNNNNNNNNNNNNNNN", 300_000)
        path = tmp_path_factory.mktemp("src") / "blob"
        path.write_bytes(data)
        up = upload("itemNNNNNNNNNNNNNNNN")
        exporter.prepare()
        with open(path, "rb") as f:
            up.audio = f
            exporter.put_item(up)
        assert harness.read(up.audio_key) == data
        assert exporter.listing()[up.audio_key].sha256 == hashlib.sha256(data).hexdigest()

    def test_a_large_body_of_unknown_length_arrives_whole(self, harness: Harness, exporter: Exporter) -> None:
        """Past every store's streaming threshold (8 MiB by default), without a size_hint (a chunked response)."""
        data = audio_of("itemOOOOOOOOOOOOOOOO", 9 * 1024 * 1024 + 7)
        up = upload("itemOOOOOOOOOOOOOOOO", data, chunk=64 * 1024)
        exporter.prepare()
        exporter.put_item(up)
        assert harness.read(up.audio_key) == data
        assert exporter.listing()[up.audio_key] == Entry(up.item_id, hashlib.sha256(data).hexdigest(), len(data), "mp3")

    def test_broken_stream_leaves_nothing_visible(self, harness: Harness, exporter: Exporter) -> None:
        up = upload("itemEEEEEEEEEEEEEEEE")
        up.audio = failing_chunks(5)
        exporter.prepare()
        with pytest.raises(OSError, match="stream broke"):
            exporter.put_item(up)
        assert harness.read(up.audio_key) is None and harness.read(up.sidecar_key) is None
        assert exporter.listing() == {}

    def test_cancel_stops_before_storing(self, harness: Harness, exporter: Exporter) -> None:
        up = upload("itemFFFFFFFFFFFFFFFF")
        up.cancel.set()
        exporter.prepare()
        with pytest.raises(Cancelled):
            exporter.put_item(up)
        assert harness.read(up.audio_key) is None
        assert exporter.listing() == {}

    def test_after_an_abort_the_manifest_is_still_saved(self, harness: Harness, exporter: Exporter) -> None:
        """Ctrl-C stops the items in flight, then the run records what it finished: that write must go through."""
        up = upload("itemUUUUUUUUUUUUUUUU")
        exporter.prepare()
        exporter.put_item(up)
        exporter.abort()
        exporter.close()
        assert harness.read(MANIFEST_KEY) is not None
        again = reopen(harness)
        try:
            assert set(again.listing()) == {up.audio_key, up.sidecar_key}
        finally:
            again.close()

    def test_put_again_replaces(self, harness: Harness, exporter: Exporter) -> None:
        exporter.prepare()
        exporter.put_item(upload("itemGGGGGGGGGGGGGGGG", b"first version"))
        exporter.put_item(upload("itemGGGGGGGGGGGGGGGG", b"second, longer version"))
        key = upload("itemGGGGGGGGGGGGGGGG").audio_key
        assert harness.read(key) == b"second, longer version"
        assert exporter.listing()[key].sha256 == hashlib.sha256(b"second, longer version").hexdigest()

    def test_delete_removes_and_is_remembered(self, harness: Harness, exporter: Exporter) -> None:
        keep, drop = upload("itemHHHHHHHHHHHHHHHH"), upload("itemIIIIIIIIIIIIIIII")
        exporter.prepare()
        exporter.put_item(keep)
        exporter.put_item(drop)
        exporter.delete([drop.audio_key, drop.sidecar_key])
        assert harness.read(drop.audio_key) is None and harness.read(drop.sidecar_key) is None
        assert set(exporter.listing()) == {keep.audio_key, keep.sidecar_key}
        exporter.close()
        again = reopen(harness)
        try:
            assert set(again.listing()) == {keep.audio_key, keep.sidecar_key}
        finally:
            again.close()

    def test_foreign_objects_are_neither_listed_nor_deletable(self, harness: Harness, exporter: Exporter) -> None:
        harness.write_foreign("by-voice/notes.txt", b"mine")
        assert exporter.listing() == {}
        with pytest.raises(DestinationError, match="not written by historyfs"):
            exporter.delete(["by-voice/notes.txt"])
        assert harness.read("by-voice/notes.txt") == b"mine"

    def test_object_changed_behind_its_back_is_not_listed(self, harness: Harness, exporter: Exporter) -> None:
        up = upload("itemJJJJJJJJJJJJJJJJ")
        exporter.prepare()
        exporter.put_item(up)
        harness.write_foreign(up.audio_key, b"short")
        assert up.audio_key not in exporter.listing()
        assert up.sidecar_key in exporter.listing()

    def test_odd_characters_in_keys(self, harness: Harness, exporter: Exporter) -> None:
        up = upload("itemKKKKKKKKKKKKKKKK", b"odd", key=ODD_KEY)
        exporter.prepare()
        exporter.put_item(up)
        assert harness.read(ODD_KEY) == b"odd"
        assert ODD_KEY in exporter.listing()

    def test_concurrent_puts(self, harness: Harness, exporter: Exporter) -> None:
        ups = [upload(f"{n:08d}itemMMMMMMMMMMMM") for n in range(12)]
        exporter.prepare()
        threads = [threading.Thread(target=exporter.put_item, args=(u,)) for u in ups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held = exporter.listing()
        assert all(held[u.audio_key].item_id == u.item_id for u in ups)
        assert len(held) == 2 * len(ups)

    def test_close_without_persist_records_nothing(self, harness: Harness, exporter: Exporter) -> None:
        exporter.prepare()
        exporter.put_item(upload("itemLLLLLLLLLLLLLLLL"))
        exporter.close(persist=False)
        exporter.close()  # a second close is a no-op
        assert harness.read(MANIFEST_KEY) is None
        again = reopen(harness)
        try:
            assert again.listing() == {}
        finally:
            again.close()

    def test_a_run_killed_before_saving_its_manifest_is_recovered(self, harness: Harness, exporter: Exporter) -> None:
        """Objects stored but never recorded (the manifest was not saved) are held again from what
        the destination recorded with them, with the same item id, sha256, size and format."""
        if not getattr(harness, "recovers", True):
            pytest.skip("this destination records nothing per object (harness.recovers is False)")
        ups = [upload("itemPPPPPPPPPPPPPPPP"), upload("itemQQQQQQQQQQQQQQQQ", audio_of("itemQQQQQQQQQQQQQQQQ", 9 * 1024 * 1024 + 3), chunk=64 * 1024)]
        exporter.prepare()
        written = {}
        for up in ups:
            audio, sidecar = exporter.put_item(up)
            written.update({up.audio_key: audio, up.sidecar_key: sidecar})
        exporter.close(persist=False)
        assert harness.read(MANIFEST_KEY) is None
        again = reopen(harness)
        try:
            assert again.listing() == {}
            keys = [*written, "by-voice/never/written.mp3"]
            assert again.recover(keys) == written
            assert again.listing() == written  # recorded from now on
        finally:
            again.close()

    def test_foreign_objects_are_not_recovered(self, harness: Harness, exporter: Exporter) -> None:
        harness.write_foreign("by-voice/notes.mp3", b"not ours")
        assert exporter.listing() == {}
        assert exporter.recover(["by-voice/notes.mp3"]) == {}
        with pytest.raises(DestinationError, match="not written by historyfs"):
            exporter.delete(["by-voice/notes.mp3"])

    def test_an_object_changed_behind_its_back_is_not_recovered(self, harness: Harness, exporter: Exporter) -> None:
        """Even at the same size: what the destination recorded no longer describes it."""
        if not getattr(harness, "recovers", True):
            pytest.skip("this destination records nothing per object (harness.recovers is False)")
        up = upload("itemRRRRRRRRRRRRRRRR")
        exporter.prepare()
        exporter.put_item(up)
        exporter.close(persist=False)
        harness.write_foreign(up.audio_key, audio_of("itemRRRRRRRRRRRRRRRR")[::-1])
        again = reopen(harness)
        try:
            assert set(again.recover([up.audio_key, up.sidecar_key])) == {up.sidecar_key}
        finally:
            again.close()
