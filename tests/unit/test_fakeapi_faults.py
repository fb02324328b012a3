"""Fault injection: every knob, observed through real HTTP, reproducible with the seed.

Timing is only ever checked as a lower bound (a fault must slow things down at least this
much), never as "fast enough": speed belongs in the benchmarks.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.fakeapi.faults import FaultInjector
from tests.fixtures.fake_api import SESSION_KEY


@pytest.fixture
def api(fake_faults: FakeApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_faults.base_url, headers={"xi-api-key": SESSION_KEY}, timeout=30) as client:
        yield client


def _statuses(api: httpx.Client, n: int) -> list[int]:
    return [api.get("/v1/history", params={"page_size": 1}).status_code for _ in range(n)]


def test_faults_are_off_by_default(api: httpx.Client) -> None:
    assert set(_statuses(api, 30)) == {200}


@pytest.mark.parametrize("bad", [{"fail_rate": 1.5}, {"truncate_rate": -0.1}, {"latency_ms": -1}, {"bandwidth": -5}])
def test_bad_knobs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Faults(**bad)


def test_latency_with_jitter_stays_in_its_band() -> None:
    inj = FaultInjector(Faults(latency_ms=100, jitter=0.5), seed=3)
    delays = [inj.delay() for _ in range(200)]
    assert all(0.05 <= d <= 0.15 for d in delays) and len(set(delays)) > 100


def test_latency_is_observable(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    fake_faults.set_faults(Faults(latency_ms=200, jitter=0))
    start = time.monotonic()
    assert api.get("/v1/history", params={"page_size": 1}).status_code == 200
    assert time.monotonic() - start >= 0.2


def test_rate_limit_answers_429_with_retry_after(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    fake_faults.set_faults(Faults(rate_limit=3))
    responses = [api.get("/v1/history", params={"page_size": 1}) for _ in range(12)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and sum(r.status_code == 200 for r in responses) >= 3
    for r in limited:
        assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
        assert r.json()["detail"]["status"] == "rate_limit_exceeded"


def test_fail_rate_is_roughly_right_and_reproducible(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    fake_faults.set_faults(Faults(fail_rate=0.3))
    first = _statuses(api, 300)
    counts = Counter(first)
    assert 60 <= counts[500] + counts[503] <= 120 and counts[500] and counts[503]
    fake_faults.set_faults(Faults(fail_rate=0.3))  # same seed: same sequence
    assert _statuses(api, 300) == first


def test_injected_failures_skip_admin(fake_faults: FakeApiServer) -> None:
    fake_faults.set_faults(Faults(fail_rate=1.0, outage=True, latency_ms=0))
    r = httpx.get(f"{fake_faults.base_url}/_fake/stats", headers={"xi-api-key": SESSION_KEY})
    assert r.status_code == 200


def test_truncated_body_is_a_protocol_error(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    item_id = fake_faults.library.items()[0]["history_item_id"]
    fake_faults.set_faults(Faults(truncate_rate=1.0))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(f"/v1/history/{item_id}/audio")
    assert fake_faults.stats()["truncated"] >= 1


def test_truncated_body_sends_full_headers_then_less(fake_faults: FakeApiServer) -> None:
    item_id = fake_faults.library.items()[0]["history_item_id"]
    full = len(fake_faults.library.audio_bytes(item_id))
    fake_faults.set_faults(Faults(truncate_rate=1.0))
    with socket.create_connection(("127.0.0.1", fake_faults.port), timeout=10) as s:
        s.sendall(f"GET /v1/history/{item_id}/audio HTTP/1.1\r\nHost: x\r\nxi-api-key: {SESSION_KEY}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert f"content-length: {full}".encode() in head.lower()
    assert len(body) < full


def test_bandwidth_cap_slows_a_body(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    item = next(r for r in fake_faults.library.snapshot().order if 100_000 < r.audio()[1] < 400_000)
    size = item.audio()[1]
    fake_faults.set_faults(Faults(bandwidth=size * 2))  # about half a second
    start = time.monotonic()
    assert len(api.get(f"/v1/history/{item.history_item_id}/audio").content) == size
    assert time.monotonic() - start >= 0.4  # all but the last 1/20 s of pacing happens before the last byte


def test_outage_resets_every_api_connection(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    fake_faults.set_faults(Faults(outage=True))
    for _ in range(3):
        with pytest.raises(httpx.TransportError):
            api.get("/v1/history")
    assert fake_faults.stats()["resets"] >= 3
    fake_faults.set_faults(Faults())
    assert api.get("/v1/history", params={"page_size": 1}).status_code == 200


def test_admin_faults_endpoint_sets_and_shows_the_knobs(fake_faults: FakeApiServer) -> None:
    url, headers = f"{fake_faults.base_url}/_fake/faults", {"xi-api-key": SESSION_KEY}
    r = httpx.put(url, json={"fail_rate": 1.0}, headers=headers)
    assert r.status_code == 200 and r.json()["fail_rate"] == 1.0
    assert fake_faults.get_faults().fail_rate == 1.0
    assert httpx.get(url, headers=headers).json()["fail_rate"] == 1.0
    assert httpx.put(url, json={"fail_rate": 3}, headers=headers).status_code == 422
    assert httpx.put(url, json={"no_such_knob": 1}, headers=headers).status_code == 422
