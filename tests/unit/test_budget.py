"""The concurrency budget: the AIMD limit (pure), slots and their queue, priority, the per-account registry.

Queue order is checked with asyncio tasks on one loop, so every step is deterministic: a task
that awaits a slot is queued before the next line runs, and nothing sleeps on a clock.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from historyfs import budget as budgets
from historyfs.budget import DEFAULT_LIMIT, MAX_LIMIT, PROBE_PATIENCE, Budget, Limit


# -- the limit alone ------------------------------------------------------------------------


def test_limit_starts_at_the_default_until_something_is_learned() -> None:
    lim = Limit()
    assert (lim.slots, lim.source, lim.account) == (DEFAULT_LIMIT, "default", None)
    assert 2 <= DEFAULT_LIMIT <= 5  # between the Free plan and Creator


def test_header_sets_the_account_limit_at_once_and_bounds_growth() -> None:
    lim = Limit()
    lim.learn_account(15)
    assert (lim.slots, lim.source) == (15, "header")
    lim.grow()
    assert lim.slots == 15
    lim.learn_account(2)  # plan changed
    assert lim.slots == 2
    lim.learn_account(0)  # "no information" (the fake without a limit)
    assert (lim.slots, lim.account) == (2, 2)


def test_additive_increase_is_one_slot_per_limit_worth_of_saturated_successes() -> None:
    lim = Limit(start=4)
    for _ in range(4):
        lim.grow()
    assert lim.slots == 5
    for _ in range(1000):
        lim.grow()
    assert lim.slots == MAX_LIMIT  # no header: never past the pool size


def test_a_429_brings_the_limit_below_the_refused_level_once_per_round() -> None:
    lim = Limit(start=8)
    old = lim.epoch
    lim.shrink(old, level=6)
    lim.shrink(old, level=5)  # a second 429 of a request sent before the first decrease
    assert (lim.slots, lim.source, lim.refused) == (5, "429s", 6)
    lim.shrink(lim.epoch, level=1)  # others hold the account's slots: we keep one
    assert lim.slots == 1


def test_growth_back_to_a_refused_level_is_patient_then_resumes() -> None:
    lim = Limit(start=4)
    lim.shrink(lim.epoch, level=3)
    assert lim.slots == 2
    for _ in range(2 * PROBE_PATIENCE - 1):
        lim.grow()
    assert lim.slots == 2
    lim.grow()
    assert lim.slots == 3  # the probe
    for _ in range(3 * PROBE_PATIENCE):
        lim.grow()
    assert lim.slots == 4 and lim.refused is None  # a whole patient round at 3 without a 429
    for _ in range(4):
        lim.grow()
    assert lim.slots == 5  # back to one slot per limit's worth


def test_429s_below_a_known_header_lower_the_limit_then_it_comes_back() -> None:
    lim = Limit()
    lim.learn_account(10)
    lim.shrink(lim.epoch, level=10)  # another program shares the key
    assert lim.slots == 9 and lim.source == "header"
    for _ in range(10_000):
        lim.grow()
    assert lim.slots == 10


def test_learning_a_header_starts_a_new_round() -> None:
    lim = Limit()
    sent_before = lim.epoch
    lim.learn_account(2)
    lim.shrink(sent_before, level=4)  # 429 of the first burst, sent before the header was known
    assert lim.slots == 2


def test_cap_bounds_everything() -> None:
    lim = Limit(cap=3)
    lim.learn_account(15)
    assert lim.slots == 3


# -- slots -------------------------------------------------------------------------------------


def test_slots_up_to_the_limit_then_timeout_without_leaking_a_waiter() -> None:
    b = Budget(start=2)
    s1, s2 = b.acquire(), b.acquire()
    with pytest.raises(TimeoutError, match="no request slot"):
        b.acquire(timeout=0)
    assert b.snapshot()["in_flight"] == 2 and b.snapshot()["waiting"] == 0
    s1.release()
    s1.release()  # idempotent
    assert b.snapshot()["in_flight"] == 1
    b.acquire(timeout=0).release()
    s2.release()
    assert b.snapshot()["in_flight"] == 0 and b.snapshot()["peak_in_flight"] == 2


def test_freed_slots_go_to_interactive_waiters_first_then_in_order() -> None:
    async def scenario() -> list[str]:
        b = Budget(start=1)
        held = await b.acquire_async()
        order: list[str] = []

        async def take(name: str, background: bool) -> None:
            slot = await b.acquire_async(background=background)
            order.append(name)
            await asyncio.sleep(0)
            slot.release()

        tasks = [asyncio.create_task(take(n, n.startswith("bg"))) for n in ("bg1", "fg1", "bg2", "fg2")]
        await asyncio.sleep(0)
        assert b.snapshot()["waiting"] == 4
        held.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["fg1", "fg2", "bg1", "bg2"]


def test_a_background_request_does_not_overtake_waiting_readers() -> None:
    async def scenario() -> None:
        b = Budget(start=1)
        held = await b.acquire_async()
        reader = asyncio.create_task(b.acquire_async())
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            await b.acquire_async(background=True, timeout=0)
        held.release()
        (await reader).release()

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> dict:
        b = Budget(start=1)
        held = await b.acquire_async()
        waiter = asyncio.create_task(b.acquire_async())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        held.release()
        return b.snapshot()

    snap = asyncio.run(scenario())
    assert snap["in_flight"] == 0 and snap["waiting"] == 0


def test_responses_teach_the_budget() -> None:
    b = Budget()
    slot = b.acquire()
    slot.answered("2")
    slot.release()
    assert b.snapshot()["limit"] == 2 and b.snapshot()["learned_from"] == "header"
    first, second = b.acquire(), b.acquire()
    second.concurrency_limited("2")  # the account refused a second request: someone else holds a slot
    first.release()
    second.release()
    b.rate_limited()
    snap = b.snapshot()
    assert (snap["limit"], snap["concurrency_429s"], snap["rate_429s"]) == (1, 1, 1)


def test_a_raised_limit_wakes_waiters() -> None:
    async def scenario() -> None:
        b = Budget(start=1)
        held = await b.acquire_async()
        waiter = asyncio.create_task(b.acquire_async())
        await asyncio.sleep(0)
        held.answered("3")  # the header says the account has room: the waiter goes now
        (await waiter).release()
        held.release()

    asyncio.run(scenario())


def test_cap_lowest_wins_and_must_be_positive() -> None:
    b = Budget()
    b.apply_cap(6)
    b.apply_cap(3)
    b.apply_cap(9)
    assert b.snapshot()["cap"] == 3 and b.snapshot()["limit"] == 3
    with pytest.raises(ValueError):
        b.apply_cap(0)


# -- the registry ------------------------------------------------------------------------------


def test_one_budget_per_url_and_key_and_the_key_is_never_stored() -> None:
    secret = "sk_budget_registry_secret_42"
    a = budgets.for_account("http://api.test/", secret)
    assert budgets.for_account("http://api.test", secret) is a
    assert budgets.for_account("http://api.test", secret + "x") is not a
    assert budgets.for_account("http://other.test", secret) is not a
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in budgets._registry)
    assert secret not in repr(budgets._registry)
