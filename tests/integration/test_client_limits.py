"""HistoryClient and AsyncHistoryClient against the fake's limits over real HTTP: many parallel downloads
under --max-concurrent end exact and none fails; chunked audio; the length probe with HEAD on and off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from historyfs.client import AsyncHistoryClient, HistoryClient, RetryPolicy
from historyfs.errors import NotFound, TruncatedBody
from historyfs.fakeapi import FakeApiServer, Faults
from tests.fixtures.fake_api import FakeTenant

#: Concurrency 429s allowed, as a fraction of requests (the bench's goal is 2%; a loaded test machine
#: can delay the server's release of a slot past its 50 ms queue now and then).
MAX_429_SHARE = 0.1


@pytest.fixture
def tenant(fake_faults: FakeApiServer, fake_tenant: Callable[..., FakeTenant]) -> FakeTenant:
    return fake_tenant(items=48, seed=21)


def _client(t: FakeTenant, **kw: object) -> HistoryClient:
    return HistoryClient(t.api_key, t.base_url, retry=RetryPolicy(deadline=60), **kw)  # type: ignore[arg-type]


def _fetch(c: HistoryClient, item_id: str) -> bytes:
    with c.audio(item_id) as stream:
        return stream.read()


def _download_all(clients: list[HistoryClient], ids: list[str], threads: int) -> dict[str, bytes]:
    with ThreadPoolExecutor(threads) as pool:
        bodies = pool.map(lambda i: _fetch(clients[i % len(clients)], ids[i]), range(len(ids)))
        return dict(zip(ids, bodies))


def _check_limits(t: FakeTenant, limit: int) -> dict:
    snap = t.library.stats.snapshot()
    requests = sum(sum(by_status.values()) for by_status in snap["requests"].values())
    assert snap["concurrency_limited"] <= MAX_429_SHARE * requests, snap
    assert set(snap["requests"]["audio"]) <= {"200", "429"}, snap
    assert t.server.concurrency(t.library)["peak"] <= limit
    return snap


@pytest.mark.parametrize("limit", [2, 5])
def test_parallel_downloads_through_one_client_end_exact(tenant: FakeTenant, limit: int) -> None:
    tenant.server.set_faults(Faults(max_concurrent=limit, latency_ms=20))
    ids = [d["history_item_id"] for d in tenant.library.items()]
    with _client(tenant) as c:
        got = _download_all([c], ids, threads=16)
    assert got == {i: tenant.library.audio_bytes(i) for i in ids}
    _check_limits(tenant, limit)
    conc = c.stats.snapshot()["concurrency"]
    assert (conc["limit"], conc["account_limit"], conc["learned_from"]) == (limit, limit, "header")
    assert conc["peak_in_flight"] <= max(limit, 4) and conc["in_flight"] == 0


def test_two_clients_of_one_key_share_the_limit(tenant: FakeTenant) -> None:
    tenant.server.set_faults(Faults(plan="free", latency_ms=20, chunked_audio=True))
    ids = [d["history_item_id"] for d in tenant.library.items()]
    with _client(tenant) as a, _client(tenant) as b:
        got = _download_all([a, b], ids, threads=16)
    assert got == {i: tenant.library.audio_bytes(i) for i in ids}
    assert a.budget is b.budget and a.stats.snapshot()["concurrency"]["limit"] == 2
    _check_limits(tenant, 2)


def test_async_client_under_a_plan_limit(tenant: FakeTenant) -> None:
    tenant.server.set_faults(Faults(plan="starter", latency_ms=20))
    ids = [d["history_item_id"] for d in tenant.library.items()[:24]]

    async def fetch(c: AsyncHistoryClient, item_id: str) -> bytes:
        async with c.audio(item_id) as stream:
            return b"".join([chunk async for chunk in stream.aiter_bytes()])

    async def main() -> list[bytes]:
        async with AsyncHistoryClient(tenant.api_key, tenant.base_url, retry=RetryPolicy(deadline=60)) as c:
            return await asyncio.gather(*(fetch(c, i) for i in ids))

    assert asyncio.run(main()) == [tenant.library.audio_bytes(i) for i in ids]
    _check_limits(tenant, 3)


def test_cap_below_the_plan_is_honoured(tenant: FakeTenant) -> None:
    tenant.server.set_faults(Faults(plan="pro", latency_ms=20))
    ids = [d["history_item_id"] for d in tenant.library.items()[:24]]
    with _client(tenant, max_concurrency=3) as c:
        assert _download_all([c], ids, threads=12) == {i: tenant.library.audio_bytes(i) for i in ids}
    assert tenant.server.concurrency(tenant.library)["peak"] <= 3
    assert c.stats.snapshot()["concurrency"]["cap"] == 3


def test_chunked_audio_streams_without_length_and_cut_bodies_are_caught(tenant: FakeTenant) -> None:
    item_id = tenant.library.items()[0]["history_item_id"]
    tenant.server.set_faults(Faults(chunked_audio=True))
    with _client(tenant) as c:
        with c.audio(item_id) as stream:
            assert stream.content_length is None and stream.read() == tenant.library.audio_bytes(item_id)
        tenant.server.set_faults(Faults(chunked_audio=True, truncate_rate=1.0))
        with c.audio(item_id) as stream, pytest.raises(TruncatedBody):
            stream.read()
        assert c.stats.snapshot()["concurrency"]["in_flight"] == 0


def test_audio_length_probe_with_head_off_and_on(tenant: FakeTenant) -> None:
    ids = [d["history_item_id"] for d in tenant.library.items()[:3]]
    with _client(tenant) as c:  # default: HEAD is 405, as from the real API
        assert c.audio_length(ids[0]) is None and c.audio_length(ids[1]) is None
    deadline = time.monotonic() + 5  # the server counts a request just after answering it
    while tenant.library.stats.snapshot()["total"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert tenant.library.stats.snapshot()["total"] == 1  # the second answer came from memory
    tenant.server.set_faults(Faults(head=True))
    with _client(tenant) as c:
        assert [c.audio_length(i) for i in ids] == [len(tenant.library.audio_bytes(i)) for i in ids]
        with pytest.raises(NotFound):
            c.audio_length("missing")
    tenant.server.set_faults(Faults(head=True, chunked_audio=True))
    with _client(tenant) as c:
        assert c.audio_length(ids[0]) is None
