"""The fake's service limits through real HTTP: requests in flight per key, the concurrency headers,
plans, the 50 ms queue, chunked audio bodies and HEAD on the audio endpoint.

Slots are held on purpose with long latency or a slow body, and "held" is checked on the
server (GET /_fake/stats), never guessed from the clock; time is only a lower bound.
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator

import httpx
import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.fakeapi.concurrency import QUEUE_SECONDS, ConcurrencyGate
from historyfs.fakeapi.faults import PLAN_LIMITS
from tests.fixtures.fake_api import FakeTenant

CONCURRENCY_DETAIL = {"status": "too_many_concurrent_requests", "code": "concurrent_limit_exceeded"}


@pytest.fixture
def tenant(fake_faults: FakeApiServer, fake_tenant: Callable[..., FakeTenant]) -> FakeTenant:
    """A fresh tenant on the session server; the server's faults are reset after the test."""
    return fake_tenant(items=12, seed=5)


def _audio_ids(t: FakeTenant) -> list[str]:
    return [d["history_item_id"] for d in t.library.items()]


def _in_flight(t: FakeTenant) -> int:
    with t.client() as c:
        return int(c.get("/_fake/stats").json()["tenant"]["concurrency"]["in_flight"])


def _wait_in_flight(t: FakeTenant, n: int) -> None:
    deadline = time.monotonic() + 20
    while _in_flight(t) != n:
        assert time.monotonic() < deadline, f"the server never had {n} requests in flight"
        time.sleep(0.01)


class Holders:
    """Background requests that hold slots (the server is slow to answer them)."""

    def __init__(self, t: FakeTenant) -> None:
        self.t = t
        self.statuses: list[int] = []
        self.threads: list[threading.Thread] = []

    def start(self, n: int) -> None:
        for _ in range(n):
            th = threading.Thread(target=self._one)
            th.start()
            self.threads.append(th)

    def _one(self) -> None:
        with self.t.client(timeout=30) as c:
            self.statuses.append(c.get("/v1/history", params={"page_size": 1}).status_code)

    def join(self) -> list[int]:
        for th in self.threads:
            th.join(timeout=30)
        return self.statuses


@pytest.fixture
def holders(tenant: FakeTenant) -> Iterator[Holders]:
    h = Holders(tenant)
    try:
        yield h
    finally:
        h.join()


# -- the gate alone -----------------------------------------------------------------------


def test_gate_counts_per_tenant_and_refuses_above_the_limit() -> None:
    gate = ConcurrencyGate(queue_seconds=0)
    a1, a2 = gate.acquire("a", 2), gate.acquire("a", 2)
    assert a1 is not None and a2 is not None and (a1.current, a2.current) == (1, 2)
    assert gate.acquire("a", 2) is None
    b = gate.acquire("b", 2)
    assert b is not None and b.current == 1
    a1.release()
    a1.release()  # idempotent
    assert gate.in_flight("a") == 1 and gate.peak("a") == 2
    assert gate.acquire("a", 0) is not None  # 0 = no limit: only counted


def test_gate_queues_a_request_until_a_slot_frees() -> None:
    gate = ConcurrencyGate(queue_seconds=30)
    held = gate.acquire("a", 1)
    assert held is not None
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(gate.acquire("a", 1)))
    waiter.start()
    held.release()
    waiter.join(timeout=30)
    assert got and got[0] is not None and gate.in_flight("a") == 1


def test_gate_refuses_after_the_queue_time() -> None:
    assert QUEUE_SECONDS == 0.05  # "queued about 50 ms" (spec, section 7)
    gate = ConcurrencyGate()
    assert gate.acquire("a", 1) is not None
    start = time.monotonic()
    assert gate.acquire("a", 1) is None
    assert time.monotonic() - start >= QUEUE_SECONDS * 0.9


# -- plans and knobs ----------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "limit"), [("free", 2), ("starter", 3), ("creator", 5), ("pro", 10), ("scale", 15), ("business", 15)])
def test_plans_set_the_limit_from_the_table(plan: str, limit: int, tenant: FakeTenant) -> None:
    assert Faults(plan=plan).concurrency_limit == limit == PLAN_LIMITS[plan]
    tenant.server.set_faults(Faults(plan=plan))
    with tenant.client() as c:
        r = c.get("/v1/history", params={"page_size": 1})
    assert r.headers["maximum-concurrent-requests"] == str(limit)


@pytest.mark.parametrize("bad", [{"plan": "gold"}, {"max_concurrent": -1}, {"max_concurrent": 1.5}, {"max_concurrent": True},
                                 {"plan": "free", "max_concurrent": 4}])
def test_bad_limits_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Faults(**bad)


def test_admin_endpoint_sets_every_new_knob(tenant: FakeTenant) -> None:
    with tenant.client() as c:
        r = c.put("/_fake/faults", json={"plan": "pro", "chunked_audio": True, "head": True})
        assert r.status_code == 200 and r.json()["plan"] == "pro" and r.json()["head"] is True
        assert c.get("/v1/history").headers["maximum-concurrent-requests"] == "10"
        audio = c.get(f"/v1/history/{_audio_ids(tenant)[0]}/audio")
        assert "content-length" not in audio.headers and audio.headers["transfer-encoding"] == "chunked"
        assert c.put("/_fake/faults", json={"max_concurrent": 3}).json()["max_concurrent"] == 3
        assert c.get("/v1/history").headers["maximum-concurrent-requests"] == "3"
        for bad in ({"plan": "gold"}, {"max_concurrent": -2}, {"max_concurrent": "many"}):
            assert c.put("/_fake/faults", json=bad).status_code == 422
    assert tenant.server.get_faults() == Faults(max_concurrent=3)


# -- the concurrency limit over HTTP ------------------------------------------------------


def test_every_response_carries_the_concurrency_headers(tenant: FakeTenant) -> None:
    with tenant.client() as c:
        answers = [c.get("/v1/history"), c.get("/v1/history/nope"), c.get("/v1/nothing"), c.get("/_fake/stats"),
                   c.get("/elsewhere"), httpx.get(f"{tenant.base_url}/v1/history", headers={"xi-api-key": "wrong"})]
    for r in answers:
        assert r.headers["maximum-concurrent-requests"] == "0", r.url  # no limit set
    assert [r.headers["current-concurrent-requests"] for r in answers] == ["1", "1", "1", "0", "0", "0"]


def test_requests_above_the_limit_get_the_documented_429(tenant: FakeTenant, holders: Holders) -> None:
    tenant.server.set_faults(Faults(max_concurrent=2, latency_ms=1500, jitter=0))
    holders.start(2)
    _wait_in_flight(tenant, 2)
    with tenant.client() as c:
        start = time.monotonic()
        r = c.get("/v1/history", params={"page_size": 1})
        waited = time.monotonic() - start
    assert r.status_code == 429 and waited >= QUEUE_SECONDS * 0.9
    assert {k: r.json()["detail"][k] for k in CONCURRENCY_DETAIL} == CONCURRENCY_DETAIL and r.json()["detail"]["message"]
    assert "retry-after" not in r.headers
    assert (r.headers["current-concurrent-requests"], r.headers["maximum-concurrent-requests"]) == ("2", "2")
    assert holders.join() == [200, 200]
    stats = tenant.server.stats()
    assert stats["concurrency_limited"] >= 1 and tenant.library.stats.snapshot()["concurrency_limited"] == 1


def test_the_limit_is_per_api_key(tenant: FakeTenant, holders: Holders, fake_tenant: Callable[..., FakeTenant]) -> None:
    other = fake_tenant(items=3, seed=2)
    tenant.server.set_faults(Faults(max_concurrent=1, latency_ms=1500, jitter=0))
    holders.start(1)
    _wait_in_flight(tenant, 1)
    with other.client() as c:
        r = c.get("/v1/history")
    assert r.status_code == 200 and r.headers["current-concurrent-requests"] == "1"
    assert holders.join() == [200]


def test_a_streamed_body_holds_its_slot_until_the_last_byte(tenant: FakeTenant) -> None:
    item = max(tenant.library.snapshot().order, key=lambda rec: rec.audio()[1])
    size = item.audio()[1]
    tenant.server.set_faults(Faults(max_concurrent=1, bandwidth=max(20_000, size // 2)))  # about 2 s
    with tenant.client(timeout=30) as c, c.stream("GET", f"/v1/history/{item.history_item_id}/audio") as stream:
        body = iter(stream.iter_bytes())
        first = next(body)
        assert c.get("/v1/history", params={"page_size": 1}).status_code == 429
        rest = b"".join(body)
    assert first + rest == tenant.library.audio_bytes(item.history_item_id) and len(first + rest) == size
    with tenant.client() as c:
        assert c.get("/v1/history", params={"page_size": 1}).status_code == 200


def test_rate_limit_429_stays_distinct(tenant: FakeTenant) -> None:
    tenant.server.set_faults(Faults(rate_limit=1, max_concurrent=5))
    with tenant.client() as c:
        limited = [r for r in (c.get("/v1/history", params={"page_size": 1}) for _ in range(6)) if r.status_code == 429]
    assert limited and all(r.json()["detail"]["status"] == "rate_limit_exceeded" and "code" not in r.json()["detail"] for r in limited)
    assert all(r.headers["retry-after"].isdigit() for r in limited)
    assert tenant.library.stats.snapshot()["rate_limited"] == len(limited)


# -- chunked audio ------------------------------------------------------------------------


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _get(t: FakeTenant, path: str, method: str = "GET") -> bytes:
    return _raw(t.server.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nxi-api-key: {t.api_key}\r\nConnection: close\r\n\r\n".encode())


def _dechunk(body: bytes) -> tuple[bytes, bool]:
    """The payload of a chunked body, and whether it ended with the zero-size chunk."""
    out, rest = b"", body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return out, rest == b"\r\n"
        out, rest = out + rest[:size], rest[size + 2 :]
    return out, False


def test_chunked_audio_has_real_framing_and_no_length(tenant: FakeTenant) -> None:
    item_id = _audio_ids(tenant)[0]
    tenant.server.set_faults(Faults(chunked_audio=True))
    head, _, body = _get(tenant, f"/v1/history/{item_id}/audio").partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower() and b"content-length" not in head.lower()
    assert _dechunk(body) == (tenant.library.audio_bytes(item_id), True)


def test_chunked_audio_reads_exactly_through_httpx(tenant: FakeTenant) -> None:
    ids = _audio_ids(tenant)
    tenant.server.set_faults(Faults(chunked_audio=True))
    with tenant.client() as c:
        audio = c.get(f"/v1/history/{ids[0]}/audio")
        wav = c.post("/v1/history/download", json={"history_item_ids": [ids[1]], "output_format": "wav"})
        zipped = c.post("/v1/history/download", json={"history_item_ids": ids[2:4]})
        missing = c.get("/v1/history/nope/audio")
        listing = c.get("/v1/history")
    assert audio.content == tenant.library.audio_bytes(ids[0]) and "content-length" not in audio.headers
    assert wav.content == tenant.library.wav_bytes(ids[1]) and "content-length" not in wav.headers
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        assert [zf.read(n) for n in zf.namelist()] == [tenant.library.audio_bytes(i) for i in ids[2:4]]
    assert missing.status_code == 404 and int(missing.headers["content-length"]) == len(missing.content)
    assert int(listing.headers["content-length"]) == len(listing.content)  # JSON is never chunked


def test_truncated_chunked_body_lacks_its_last_chunk(tenant: FakeTenant) -> None:
    item_id = _audio_ids(tenant)[0]
    tenant.server.set_faults(Faults(chunked_audio=True, truncate_rate=1.0))
    _, _, body = _get(tenant, f"/v1/history/{item_id}/audio").partition(b"\r\n\r\n")
    payload, complete = _dechunk(body)
    assert not complete and len(payload) < len(tenant.library.audio_bytes(item_id))
    with tenant.client() as c, pytest.raises(httpx.RemoteProtocolError):
        c.get(f"/v1/history/{item_id}/audio")


# -- HEAD -----------------------------------------------------------------------------------


def _head(t: FakeTenant, path: str) -> tuple[http.client.HTTPResponse, http.client.HTTPResponse]:
    """HEAD then GET on one keep-alive connection: the HEAD answer must leave it usable."""
    conn = http.client.HTTPConnection("127.0.0.1", t.server.port, timeout=20)
    try:
        conn.request("HEAD", path, headers={"xi-api-key": t.api_key})
        head = conn.getresponse()
        head.read()
        conn.request("GET", "/v1/history?page_size=1", headers={"xi-api-key": t.api_key})
        after = conn.getresponse()
        after.read()
        return head, after
    finally:
        conn.close()


def test_head_is_405_by_default_like_fastapi(tenant: FakeTenant) -> None:
    head, after = _head(tenant, f"/v1/history/{_audio_ids(tenant)[0]}/audio")
    assert head.status == 405 and head.getheader("allow") == "GET"
    assert int(head.getheader("content-length") or 0) == len(b'{"detail":"Method Not Allowed"}')
    assert head.getheader("maximum-concurrent-requests") == "0" and after.status == 200


def test_head_switch_gives_the_audio_length_without_the_body(tenant: FakeTenant) -> None:
    item_id = _audio_ids(tenant)[0]
    tenant.server.set_faults(Faults(head=True))
    head, after = _head(tenant, f"/v1/history/{item_id}/audio")
    assert head.status == 200 and after.status == 200
    assert int(head.getheader("content-length") or -1) == len(tenant.library.audio_bytes(item_id))
    assert head.getheader("content-type") == tenant.library.get(item_id)["content_type"]
    assert _head(tenant, "/v1/history/nope/audio")[0].status == 404
    assert _head(tenant, "/v1/history")[0].status == 405  # only the audio endpoint offers HEAD
    assert tenant.library.stats.snapshot()["requests"]["audio_head"] == {"200": 1, "404": 1}


def test_head_under_chunked_audio_gives_no_length(tenant: FakeTenant) -> None:
    tenant.server.set_faults(Faults(head=True, chunked_audio=True))
    head, after = _head(tenant, f"/v1/history/{_audio_ids(tenant)[0]}/audio")
    assert head.status == 200 and head.getheader("content-length") is None and after.status == 200
