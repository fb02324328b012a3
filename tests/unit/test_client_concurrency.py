"""The clients and the concurrency budget, on httpx.MockTransport: slots for every request, concurrency
429s that wait instead of spending retries, what headers teach, and the audio length probe (HEAD)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from historyfs.budget import Budget
from historyfs.client import AsyncHistoryClient, HistoryClient, RetryPolicy
from historyfs.client_base import CROWDED_PAUSE_MAX
from historyfs.errors import NotFound, RateLimited, Unavailable
from tests.unit.test_client import BASE, FAST, KEY, Recorder, api_handler, no_sleep  # noqa: F401 - fixture

CONCURRENT = {"detail": {"status": "too_many_concurrent_requests", "code": "concurrent_limit_exceeded", "message": "busy"}}
RATE = {"detail": {"status": "rate_limit_exceeded", "message": "slow down"}}


def crowded(limit: str = "2") -> httpx.Response:
    return httpx.Response(429, json=CONCURRENT, headers={"maximum-concurrent-requests": limit, "current-concurrent-requests": limit})


def client(handler: Any = api_handler, budget: Budget | None = None, **kw: Any) -> HistoryClient:
    return HistoryClient(KEY, BASE, transport=httpx.MockTransport(handler), retry=kw.pop("retry", FAST), seed=1,
                         budget=budget or Budget(), **kw)


class CountingBudget(Budget):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.taken: list[bool] = []

    def acquire(self, *, background: bool = False, timeout: float | None = None):  # type: ignore[no-untyped-def]
        self.taken.append(background)
        return super().acquire(background=background, timeout=timeout)


# -- every request holds a slot -------------------------------------------------------------


def test_every_operation_takes_and_returns_a_slot() -> None:
    budget = CountingBudget()
    head = lambda r: httpx.Response(200, headers={"content-length": "1000"}) if r.method == "HEAD" else api_handler(r)  # noqa: E731
    with client(head, budget) as c:
        c.list_page()
        c.get("item00001")
        c.delete("item00001")
        with c.audio("item00001", background=True) as s:
            s.read()
        with c.download(["item00001", "item00002"]) as s:
            s.read()
        assert c.audio_length("item00002", background=True) == 1000
    assert budget.taken == [False, False, False, True, False, True]
    assert budget.snapshot()["in_flight"] == 0


def test_an_open_audio_stream_holds_its_slot_until_read_or_closed() -> None:
    budget = Budget(start=1)
    budget.apply_cap(1)
    with client(budget=budget) as c:
        with c.audio("item00001") as s:
            with pytest.raises(TimeoutError):
                budget.acquire(timeout=0)
            assert s.read() == b"A" * 1000
            assert budget.snapshot()["in_flight"] == 0  # given back at the end of the body
        with c.audio("item00001"):
            assert budget.snapshot()["in_flight"] == 1  # never read: given back on close
        assert budget.snapshot()["in_flight"] == 0


def test_clients_of_one_account_share_one_budget() -> None:
    transport = httpx.MockTransport(api_handler)
    a, b = HistoryClient(KEY, BASE, transport=transport), HistoryClient(KEY, BASE + "/", transport=transport)
    other = HistoryClient(KEY + "2", BASE, transport=transport)
    aio = AsyncHistoryClient(KEY, BASE, transport=httpx.MockTransport(api_handler))
    assert a.budget is b.budget is aio.budget and other.budget is not a.budget
    assert a.stats.snapshot()["concurrency"] == b.stats.snapshot()["concurrency"]


def test_max_concurrency_caps_the_budget() -> None:
    with client(max_concurrency=2) as c:
        c.list_page()
    snap = c.stats.snapshot()["concurrency"]
    assert (snap["cap"], snap["limit"]) == (2, 2)
    with pytest.raises(ValueError):
        client(max_concurrency=0)


def test_no_slot_within_the_deadline_is_unavailable() -> None:
    budget = Budget(start=1)
    held = budget.acquire()
    with client(budget=budget, retry=RetryPolicy(deadline=0.05)) as c, pytest.raises(Unavailable, match="no request slot"):
        c.get("item00001")
    held.release()


# -- what responses teach -------------------------------------------------------------------


def test_the_header_sets_the_limit() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        response = api_handler(request)
        response.headers["maximum-concurrent-requests"] = "10"
        return response

    with client(handler) as c:
        c.get("item00001")
    snap = c.stats.snapshot()["concurrency"]
    assert (snap["limit"], snap["account_limit"], snap["learned_from"]) == (10, 10, "header")


def test_concurrency_429_waits_for_a_slot_without_spending_retries(no_sleep: list[float]) -> None:
    rec = Recorder([crowded()] * 6)
    with client(rec, retry=RetryPolicy(max_attempts=2, deadline=60)) as c:
        assert c.get("item00001").history_item_id == "item00001"
    assert len(rec.requests) == 7
    assert all(0 <= w <= CROWDED_PAUSE_MAX for w in no_sleep) and len(no_sleep) == 6
    snap = c.stats.snapshot()
    assert snap["calls"]["get"] == {"429": 6, "200": 1}
    assert (snap["concurrency"]["concurrency_429s"], snap["concurrency"]["rate_429s"]) == (6, 0)
    assert snap["concurrency"]["account_limit"] == 2 and snap["concurrency"]["in_flight"] == 0


def test_legacy_status_alone_is_a_concurrency_429(no_sleep: list[float]) -> None:
    legacy = httpx.Response(429, json={"detail": {"status": "too_many_concurrent_requests", "message": "busy"}})
    with client(Recorder([legacy] * 3), retry=RetryPolicy(max_attempts=1, deadline=60)) as c:
        with c.audio("item00001") as s:
            assert s.read() == b"A" * 1000
    assert c.stats.snapshot()["concurrency"]["concurrency_429s"] == 3


def test_concurrency_429s_end_at_the_deadline(no_sleep: list[float]) -> None:
    rec = Recorder([crowded()] * 10_000)
    with client(rec, retry=RetryPolicy(max_attempts=1, deadline=3)) as c, pytest.raises(RateLimited, match="still over the concurrency limit") as info:
        c.get("item00001")
    assert info.value.code == "concurrent_limit_exceeded" and sum(no_sleep) < 3


def test_rate_limit_429_keeps_retry_after_and_spends_retries(no_sleep: list[float]) -> None:
    limited = httpx.Response(429, json=RATE, headers={"retry-after": "1"})
    with client(Recorder([limited] * 5), retry=RetryPolicy(max_attempts=3, deadline=60)) as c, pytest.raises(RateLimited):
        c.get("item00001")
    assert no_sleep == [1.0, 1.0]
    snap = c.stats.snapshot()["concurrency"]
    assert (snap["rate_429s"], snap["concurrency_429s"]) == (3, 0)


# -- the length probe -----------------------------------------------------------------------


def head_handler(status: int, headers: dict[str, str] | None = None) -> Recorder:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(status, headers=headers or {})
        return api_handler(request)

    return Recorder([], then=handler)


def test_audio_length_from_head() -> None:
    rec = head_handler(200, {"content-length": "123456", "content-type": "audio/mpeg"})
    with client(rec) as c:
        assert c.audio_length("item00001") == 123456
        assert c.audio_length("item00002") == 123456
    assert [(r.method, r.url.path) for r in rec.requests] == [("HEAD", "/v1/history/item00001/audio"), ("HEAD", "/v1/history/item00002/audio")]
    assert c.stats.snapshot()["calls"]["audio_head"] == {"200": 2}


@pytest.mark.parametrize(("status", "headers"), [(405, {"content-length": "31", "allow": "GET"}), (501, {}), (200, {"transfer-encoding": "chunked"})])
def test_audio_length_not_offered_is_none_and_remembered(status: int, headers: dict[str, str], no_sleep: list[float]) -> None:
    rec = head_handler(status, headers)
    with client(rec) as c:
        assert c.audio_length("item00001") is None
        assert c.audio_length("item00002") is None
    assert len(rec.requests) == 1 and no_sleep == []


def test_audio_length_of_a_missing_item_is_not_found_and_head_stays_on() -> None:
    rec = head_handler(404)
    with client(rec) as c:
        with pytest.raises(NotFound):
            c.audio_length("gone")
        with pytest.raises(NotFound):
            c.audio_length("gone")
    assert len(rec.requests) == 2


def test_audio_length_retries_like_any_call(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.Response(503, json={}), crowded()], then=head_handler(200, {"content-length": "77"}))
    with client(rec) as c:
        assert c.audio_length("item00001") == 77
    assert len(rec.requests) == 3


# -- the async twin ---------------------------------------------------------------------------


def test_async_client_uses_the_budget_and_probes_length() -> None:
    async def sleep(_: float) -> None:
        return None

    async def main(budget: Budget) -> tuple[int | None, int | None, bytes]:
        rec = Recorder([crowded("3")], then=head_handler(405))
        async with AsyncHistoryClient(KEY, BASE, transport=httpx.MockTransport(rec), retry=FAST, budget=budget) as c:
            async with c.audio("item00001", background=True) as s:
                assert budget.snapshot()["in_flight"] == 1
                data = b"".join([x async for x in s.aiter_bytes()])
            first, second = await c.audio_length("item00001"), await c.audio_length("item00002")
        assert len(rec.requests) == 3
        return first, second, data

    budget = Budget()
    original, asyncio.sleep = asyncio.sleep, sleep  # type: ignore[assignment]
    try:
        first, second, data = asyncio.run(main(budget))
    finally:
        asyncio.sleep = original  # type: ignore[assignment]
    assert (first, second, data) == (None, None, b"A" * 1000)
    snap = budget.snapshot()
    assert (snap["in_flight"], snap["concurrency_429s"], snap["account_limit"]) == (0, 1, 3)
