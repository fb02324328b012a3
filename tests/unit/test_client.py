"""HistoryClient and AsyncHistoryClient against httpx.MockTransport: paging, filters, retries, errors, streams."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from historyfs import client as client_mod
from historyfs.client import AsyncHistoryClient, HistoryClient, RetryPolicy
from historyfs.errors import (
    AuthError,
    BadRequest,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    TruncatedBody,
    Unavailable,
)

KEY = "sk_unit_secret_0123456789"
BASE = "http://api.test"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002, retry_after_cap=0.01, deadline=5)


def make_items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "history_item_id": f"item{i:05d}",
            "date_unix": 1_700_000_000 + i * 60,
            "content_type": "audio/mpeg",
            "voice_id": "v1" if i % 2 else "v2",
            "voice_name": "Rachel" if i % 2 else "Adam",
            "text": f"clip number {i}",
            "character_count_change_from": 100,
            "character_count_change_to": 120,
            "state": "created",
        }
        for i in range(n)
    ]


ITEMS = make_items(25)


def list_handler(request: httpx.Request) -> httpx.Response:
    """A small faithful list endpoint: newest first, cursor, page_size, voice filter."""
    if request.headers.get("xi-api-key") != KEY:
        return httpx.Response(401, json={"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
    q = request.url.params
    rows = sorted(ITEMS, key=lambda d: d["date_unix"], reverse=q.get("sort_direction", "desc") == "desc")
    if "voice_id" in q:
        rows = [r for r in rows if r["voice_id"] == q["voice_id"]]
    if "start_after_history_item_id" in q:
        ids = [r["history_item_id"] for r in rows]
        rows = rows[ids.index(q["start_after_history_item_id"]) + 1 :]
    size = int(q.get("page_size", 100))
    page = rows[:size]
    return httpx.Response(
        200,
        json={
            "history": page,
            "has_more": len(rows) > size,
            "last_history_item_id": page[-1]["history_item_id"] if page else None,
            "scanned_until": page[-1]["date_unix"] if page else None,
        },
    )


def api_handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v1/history":
        return list_handler(request)
    if path == "/v1/history/download":
        body = json.loads(request.content)
        fmt = body.get("output_format")
        return httpx.Response(200, content=(b"RIFF" if fmt == "wav" else b"ID3") + ",".join(body["history_item_ids"]).encode())
    item_id = path.split("/")[3]
    match = [d for d in ITEMS if d["history_item_id"] == item_id]
    if not match:
        return httpx.Response(404, json={"detail": {"status": "invalid_id", "message": f"A history item with ID '{item_id}' was not found on the server."}})
    if path.endswith("/audio"):
        return httpx.Response(200, content=b"A" * 1000, headers={"content-type": "audio/mpeg"})
    if request.method == "DELETE":
        return httpx.Response(200, json={"status": "ok"})
    return httpx.Response(200, json=match[0])


def make_client(handler=api_handler, **kw: Any) -> HistoryClient:
    return HistoryClient(KEY, BASE, transport=httpx.MockTransport(handler), retry=kw.pop("retry", FAST), seed=1, **kw)


class Recorder:
    """A handler wrapper that answers a scripted sequence of responses, then delegates."""

    def __init__(self, script: list[Any], then=api_handler) -> None:
        self.script = list(script)
        self.then = then
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        return self.then(request)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(client_mod.time, "sleep", waits.append)
    return waits


# -- listing ------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 7, 25, 1000])
def test_iter_items_walks_every_page_in_order(page_size: int) -> None:
    with make_client() as c:
        got = [i.history_item_id for i in c.iter_items(page_size=page_size)]
    assert got == [d["history_item_id"] for d in sorted(ITEMS, key=lambda d: -d["date_unix"])]
    assert len(set(got)) == len(ITEMS)


def test_list_sends_every_filter_as_documented() -> None:
    rec = Recorder([])
    with make_client(rec) as c:
        rec.script = [httpx.Response(200, json={"history": [], "has_more": False, "last_history_item_id": None})]
        page = c.list_page(2, "x", voice_id="v", model_id="m", date_before_unix=10, date_after_unix=5, sort_direction="asc", search="hello world", source="TTS")
    params = dict(rec.requests[-1].url.params)
    assert params == {
        "page_size": "2",
        "start_after_history_item_id": "x",
        "voice_id": "v",
        "model_id": "m",
        "date_before_unix": "10",
        "date_after_unix": "5",
        "sort_direction": "asc",
        "search": "hello world",
        "source": "TTS",
    }
    assert rec.requests[-1].headers["xi-api-key"] == KEY
    assert page.items == () and page.last_history_item_id is None and not page.has_more


def test_filter_is_applied_and_items_are_typed() -> None:
    with make_client() as c:
        items = list(c.iter_items(page_size=3, voice_id="v1"))
    assert items and all(i.voice_id == "v1" and i.voice_name == "Rachel" for i in items)
    assert items[0].character_cost == 20 and items[0].to_json()["text"].startswith("clip number")


def test_bad_list_arguments_are_refused_before_sending() -> None:
    rec = Recorder([])
    with make_client(rec) as c:
        with pytest.raises(BadRequest):
            c.list_page(page_size=0)
        with pytest.raises(BadRequest):
            c.list_page(page_size=1001)
        with pytest.raises(BadRequest):
            c.list_page(sort_direction="sideways")
    assert rec.requests == []


def test_cursor_loop_stops_if_server_repeats_the_cursor() -> None:
    stuck = {"history": [ITEMS[0]], "has_more": True, "last_history_item_id": ITEMS[0]["history_item_id"]}
    with make_client(lambda r: httpx.Response(200, json=stuck)) as c:
        pages = list(c.iter_pages(page_size=1, start_after_history_item_id=ITEMS[0]["history_item_id"]))
    assert len(pages) == 1


def test_malformed_listing_is_a_clear_error() -> None:
    with make_client(lambda r: httpx.Response(200, json={"items": []})) as c, pytest.raises(MalformedResponse):
        c.list_page()
    with make_client(lambda r: httpx.Response(200, content=b"<html>")) as c, pytest.raises(MalformedResponse, match="not JSON"):
        c.list_page()


# -- get / delete / errors ----------------------------------------------------------------


def test_get_and_delete() -> None:
    with make_client() as c:
        assert c.get("item00003").text == "clip number 3"
        assert c.delete("item00003") is None


def test_unknown_item_is_not_found_with_server_message() -> None:
    with make_client() as c, pytest.raises(NotFound, match="was not found") as info:
        c.get("nope")
    assert info.value.status == 404 and info.value.code == "invalid_id"


def test_item_ids_are_quoted_into_one_path_segment() -> None:
    rec = Recorder([httpx.Response(404, json={"detail": {"status": "invalid_id", "message": "x"}})])
    with make_client(rec) as c, pytest.raises(NotFound):
        c.get("../../v1/user")
    assert rec.requests[0].url.raw_path.startswith(b"/v1/history/..%2F..%2Fv1%2Fuser")


def test_bad_key_is_auth_error_without_the_key_in_the_message() -> None:
    c = HistoryClient("sk_wrong_key_987", BASE, transport=httpx.MockTransport(api_handler), retry=FAST)
    with pytest.raises(AuthError) as info:
        c.check_auth()
    assert "invalid_api_key" in str(info.value) and "sk_wrong_key_987" not in str(info.value)


def test_server_echoing_the_key_is_redacted() -> None:
    echo = lambda r: httpx.Response(400, json={"detail": {"status": "bad", "message": f"key {r.headers['xi-api-key']} is odd"}})  # noqa: E731
    with make_client(echo) as c, pytest.raises(BadRequest) as info:
        c.get("item00001")
    assert KEY not in str(info.value) and "***" in str(info.value)


def test_validation_error_shape_is_readable() -> None:
    body = {"detail": [{"loc": ["query", "page_size"], "msg": "must be <= 1000", "type": "value_error"}]}
    with make_client(lambda r: httpx.Response(422, json=body)) as c, pytest.raises(BadRequest, match="page_size: must be <= 1000"):
        c.list_page()


@pytest.mark.parametrize("status,exc", [(401, AuthError), (403, AuthError), (404, NotFound), (400, BadRequest), (422, BadRequest)])
def test_status_mapping_does_not_retry_client_errors(status: int, exc: type, no_sleep: list[float]) -> None:
    rec = Recorder([httpx.Response(status, json={"detail": {"status": "x", "message": "m"}})] * 5)
    with make_client(rec) as c, pytest.raises(exc):
        c.get("item00001")
    assert len(rec.requests) == 1 and no_sleep == []


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_then_succeed(status: int, no_sleep: list[float]) -> None:
    rec = Recorder([httpx.Response(status, json={"status": "internal_server_error", "message": "boom"})] * 2)
    with make_client(rec) as c:
        assert c.get("item00002").history_item_id == "item00002"
    assert len(rec.requests) == 3 and len(no_sleep) == 2
    assert c.stats.snapshot()["calls"]["get"] == {str(status): 2, "200": 1}


def test_connection_errors_and_timeouts_are_retried(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
    with make_client(rec) as c:
        assert len(list(c.iter_items())) == len(ITEMS)
    assert len(no_sleep) == 2 and c.stats.snapshot()["calls"]["list"]["error"] == 2


def test_retry_after_is_honoured_and_capped(no_sleep: list[float]) -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002, retry_after_cap=30, deadline=100)
    rec = Recorder([httpx.Response(429, headers={"retry-after": "3"}, json={}), httpx.Response(429, headers={"retry-after": "999"}, json={})])
    with make_client(rec, retry=policy) as c:
        c.get("item00001")
    assert no_sleep == [3.0, 30.0]


def test_backoff_without_retry_after_grows_with_jitter(no_sleep: list[float]) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=8.0, deadline=1000)
    rec = Recorder([httpx.Response(503, json={})] * 4)
    with make_client(rec, retry=policy) as c:
        c.get("item00001")
    assert len(no_sleep) == 4
    for attempt, wait in enumerate(no_sleep):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= wait <= ceiling


def test_retries_give_up_with_unavailable_after_max_attempts(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.Response(503, json={"status": "down", "message": "maintenance"})] * 10)
    with make_client(rec) as c, pytest.raises(Unavailable, match="gave up after 4 attempts"):
        c.get("item00001")
    assert len(rec.requests) == FAST.max_attempts


def test_rate_limited_error_carries_retry_after(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.Response(429, headers={"retry-after": "2"}, json={"detail": {"status": "rate_limit_exceeded", "message": "slow down"}})] * 10)
    with make_client(rec) as c, pytest.raises(RateLimited) as info:
        c.get("item00001")
    assert info.value.retry_after == 2.0 and info.value.code == "rate_limit_exceeded"


def test_deadline_bounds_total_waiting(no_sleep: list[float]) -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=1, max_delay=1, retry_after_cap=10, deadline=5)
    rec = Recorder([httpx.Response(503, json={})] * 100)
    with make_client(rec, retry=policy) as c, pytest.raises(Unavailable):
        c.get("item00001")
    assert sum(no_sleep) < 5


def test_cut_short_json_body_is_retried(no_sleep: list[float]) -> None:
    short = httpx.Response(200, headers={"content-length": "500"}, stream=_Broken(b'{"history": ['))
    rec = Recorder([short])
    with make_client(rec) as c:
        assert c.get("item00004").history_item_id == "item00004"
    assert len(rec.requests) == 2


class _Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that yields some bytes and then fails as a dropped connection does."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self):
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    async def __aiter__(self):
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


# -- audio and download streams -----------------------------------------------------------


def test_audio_streams_bytes_with_type_and_length() -> None:
    with make_client() as c, c.audio("item00001") as stream:
        assert stream.content_type == "audio/mpeg" and stream.content_length == 1000
        chunks = list(stream.iter_bytes(chunk_size=300))
    assert b"".join(chunks) == b"A" * 1000 and max(len(x) for x in chunks) <= 300
    assert c.stats.snapshot()["bytes_received"] == 1000


def test_short_body_is_truncated_error_never_a_shorter_file() -> None:
    short = lambda r: httpx.Response(200, headers={"content-length": "1000", "content-type": "audio/mpeg"}, stream=httpx.ByteStream(b"A" * 400))  # noqa: E731
    with make_client(short) as c, c.audio("item00001") as stream:
        with pytest.raises(TruncatedBody) as info:
            b"".join(stream.iter_bytes())
    assert info.value.expected == 1000 and info.value.received == 400


def test_dropped_connection_mid_body_is_truncated_error() -> None:
    broken = lambda r: httpx.Response(200, headers={"content-length": "1000"}, stream=_Broken(b"A" * 10))  # noqa: E731
    with make_client(broken) as c, c.audio("item00001") as stream, pytest.raises(TruncatedBody):
        stream.read()


def test_audio_errors_before_body_are_retried(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.Response(503, json={}), httpx.ConnectError("x")])
    with make_client(rec) as c, c.audio("item00001") as stream:
        assert stream.read() == b"A" * 1000
    assert len(rec.requests) == 3


def test_audio_of_unknown_item_is_not_found() -> None:
    with make_client() as c, pytest.raises(NotFound), c.audio("missing"):
        pass


def test_download_single_wav_and_many() -> None:
    rec = Recorder([])
    with make_client(rec) as c:
        with c.download(["item00001"], output_format="wav") as s:
            assert s.read() == b"RIFFitem00001"
        with c.download(["item00001", "item00002"]) as s:
            assert s.read() == b"ID3item00001,item00002"
    assert json.loads(rec.requests[0].content) == {"history_item_ids": ["item00001"], "output_format": "wav"}
    assert json.loads(rec.requests[1].content) == {"history_item_ids": ["item00001", "item00002"]}
    with pytest.raises(BadRequest):
        with make_client() as c, c.download([]):
            pass
    with pytest.raises(BadRequest):
        with make_client() as c, c.download(["a"], output_format="flac"):
            pass


# -- async twin ---------------------------------------------------------------------------


def test_async_client_matches_sync_client() -> None:
    async def main() -> tuple[list[str], bytes, str]:
        async with AsyncHistoryClient(KEY, BASE, transport=httpx.MockTransport(api_handler), retry=FAST) as c:
            ids = [i.history_item_id async for i in c.iter_items(page_size=4)]
            async with c.audio("item00001") as stream:
                data = b"".join([chunk async for chunk in stream.aiter_bytes()])
            item = await c.get("item00002")
            await c.delete("item00002")
            await c.check_auth()
            return ids, data, item.text or ""

    ids, data, text = asyncio.run(main())
    with make_client() as c:
        assert ids == [i.history_item_id for i in c.iter_items()]
    assert data == b"A" * 1000 and text == "clip number 2"


def test_async_retries_and_truncation() -> None:
    async def sleep(_: float) -> None:
        return None

    async def main() -> None:
        rec = Recorder([httpx.Response(503, json={}), httpx.Response(200, headers={"content-length": "50"}, stream=_Broken(b"x"))])
        async with AsyncHistoryClient(KEY, BASE, transport=httpx.MockTransport(rec), retry=FAST) as c:
            async with c.audio("item00001") as stream:
                with pytest.raises(TruncatedBody):
                    async for _ in stream.aiter_bytes():
                        pass
            with pytest.raises(AuthError):
                bad = AsyncHistoryClient("wrong", BASE, transport=httpx.MockTransport(api_handler), retry=FAST)
                await bad.check_auth()
        assert len(rec.requests) == 2

    original = asyncio.sleep
    asyncio.sleep = sleep  # type: ignore[assignment]
    try:
        asyncio.run(main())
    finally:
        asyncio.sleep = original  # type: ignore[assignment]


def test_empty_key_is_refused() -> None:
    with pytest.raises(AuthError):
        HistoryClient("", BASE)


def test_delete_whose_answer_was_lost_is_not_repeated(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.ReadError("connection reset by peer")])
    with make_client(rec) as c, pytest.raises(OutcomeUnknown):
        c.delete("item00001")
    assert [r.method for r in rec.requests] == ["DELETE"]
    rec = Recorder([httpx.ConnectError("refused"), httpx.Response(503, json={})])
    with make_client(rec) as c:
        c.delete("item00001")  # never reached the server, or refused by it: safe to retry
    assert [r.method for r in rec.requests] == ["DELETE"] * 3


def test_read_requests_whose_answer_was_lost_are_retried(no_sleep: list[float]) -> None:
    rec = Recorder([httpx.ReadError("reset")])
    with make_client(rec) as c:
        assert c.get("item00001").history_item_id == "item00001"
    assert len(rec.requests) == 2
