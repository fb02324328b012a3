"""Every /v1 endpoint and error of the fake, through real HTTP on 127.0.0.1 (httpx)."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from historyfs.fakeapi import FakeApiServer, catalog
from tests.fixtures.fake_api import SESSION_KEY, FakeTenant, expected_listing, page_through


@pytest.fixture(scope="module")
def api(fake_api: FakeApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_api.base_url, headers={"xi-api-key": SESSION_KEY}) as client:
        yield client


def _listing(api: httpx.Client, page_size: int, **params: object) -> list[dict]:
    def get(cursor: str | None) -> tuple[list[dict], bool, str | None]:
        q = {"page_size": page_size, **params, **({"start_after_history_item_id": cursor} if cursor else {})}
        body = api.get("/v1/history", params=q).raise_for_status().json()
        return body["history"], body["has_more"], body["last_history_item_id"]

    return page_through(get)


def test_default_listing_is_the_100_newest(api: httpx.Client, fake_api: FakeApiServer) -> None:
    r = api.get("/v1/history")
    body = r.json()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert body["history"] == fake_api.library.items()[:100]
    assert body["has_more"] is True
    assert body["last_history_item_id"] == body["history"][-1]["history_item_id"]
    assert body["scanned_until"] == body["history"][-1]["date_unix"]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_a_burst_of_new_connections_fits_in_the_listen_backlog(fake_api: FakeApiServer) -> None:
    """A client opening 16 connections at once (an SDK's thread pool, a mount's read-ahead) must not
    have SYNs dropped and retried a second later: the listen backlog is the system's, not socketserver's 5."""
    port = urlsplit(fake_api.base_url).port
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "LISTEN" and int(out[2]) >= 128  # Send-Q of a listening socket: its backlog


def test_headers_like_the_service(api: httpx.Client) -> None:
    r = api.get("/v1/history", params={"page_size": 1})
    assert r.headers["server"] == "uvicorn"
    assert len(r.headers["x-trace-id"]) == 32
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.http_version == "HTTP/1.1"


LISTING_PARAMS = [
    {},
    {"sort_direction": "asc"},
    {"voice_id": catalog.VOICES[0].voice_id},
    {"model_id": "eleven_v3", "sort_direction": "asc"},
    {"source": "TTS", "search": "the"},
    {"search": "CAFÉ"},
    {"date_after_unix": 1_785_000_000, "date_before_unix": 1_790_000_000},
    {"date_after_unix": 1_785_000_000, "sort_direction": "asc", "source": "TTS"},
    {"source": "STS", "model_id": catalog.STS_MODEL},
]


@pytest.mark.parametrize("page_size", [13, 100, 1000])
@pytest.mark.parametrize("params", LISTING_PARAMS, ids=lambda p: ",".join(p) or "none")
def test_paging_with_filters_matches_brute_force(api: httpx.Client, fake_api: FakeApiServer, page_size: int, params: dict) -> None:
    expected = expected_listing(fake_api.library.items(), **params)
    assert _listing(api, page_size, **params) == expected


def test_page_size_one_walks_everything(api: httpx.Client, fake_api: FakeApiServer) -> None:
    assert _listing(api, 1, sort_direction="asc") == fake_api.library.items()[::-1]


def test_date_bounds_are_before_exclusive_and_after_inclusive(api: httpx.Client, fake_api: FakeApiServer) -> None:
    d = fake_api.library.items()[50]["date_unix"]
    exact = api.get("/v1/history", params={"date_after_unix": d, "date_before_unix": d + 1, "page_size": 1000}).json()["history"]
    assert exact and all(x["date_unix"] == d for x in exact)
    assert api.get("/v1/history", params={"date_after_unix": d, "date_before_unix": d}).json()["history"] == []


def test_empty_page(api: httpx.Client) -> None:
    body = api.get("/v1/history", params={"voice_id": "nobody"}).json()
    assert body == {"history": [], "has_more": False, "last_history_item_id": None, "scanned_until": None}


@pytest.mark.parametrize("size", [1, 1000])
def test_page_size_limits_are_accepted(api: httpx.Client, size: int) -> None:
    assert len(api.get("/v1/history", params={"page_size": size}).json()["history"]) == min(size, 300)


@pytest.mark.parametrize(("name", "value", "kind"), [
    ("page_size", "0", "greater_than_equal"),
    ("page_size", "1001", "less_than_equal"),
    ("page_size", "ten", "int_parsing"),
    ("date_before_unix", "yesterday", "int_parsing"),
    ("date_after_unix", "1.5", "int_parsing"),
    ("sort_direction", "up", "enum"),
    ("source", "Radio", "enum"),
])
def test_bad_query_is_422_in_fastapi_shape(api: httpx.Client, name: str, value: str, kind: str) -> None:
    r = api.get("/v1/history", params={name: value})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", name] and err["type"] == kind and err["msg"] and err["input"] == value


def test_unknown_cursor_is_404_invalid_id(api: httpx.Client) -> None:
    r = api.get("/v1/history", params={"start_after_history_item_id": "NoSuchItem0000000000"})
    assert r.status_code == 404 and r.json()["detail"]["status"] == "invalid_id"


def test_get_one_item(api: httpx.Client, fake_api: FakeApiServer) -> None:
    item = fake_api.library.items()[42]
    assert api.get(f"/v1/history/{item['history_item_id']}").json() == item


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/history/UnknownId"), ("DELETE", "/v1/history/UnknownId"), ("GET", "/v1/history/UnknownId/audio"),
])
def test_unknown_item_is_404_invalid_id(api: httpx.Client, method: str, path: str) -> None:
    r = api.request(method, path)
    assert r.status_code == 404
    assert r.json() == {"detail": {"status": "invalid_id", "message": "A history item with ID 'UnknownId' was not found on the server."}}


def test_audio_is_the_items_bytes(api: httpx.Client, fake_api: FakeApiServer) -> None:
    for item in fake_api.library.items()[:40]:
        r = api.get(f"/v1/history/{item['history_item_id']}/audio")
        assert r.status_code == 200 and r.headers["content-type"] == item["content_type"]
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.content == fake_api.library.audio_bytes(item["history_item_id"])


def test_delete_then_gone_everywhere(fresh_library: FakeTenant) -> None:
    lib = fresh_library.library
    victim = lib.items()[5]["history_item_id"]
    with fresh_library.client() as c:
        assert c.delete(f"/v1/history/{victim}").json() == {"status": "ok"}
        assert c.delete(f"/v1/history/{victim}").status_code == 404
        assert c.get(f"/v1/history/{victim}").status_code == 404
        assert c.get(f"/v1/history/{victim}/audio").status_code == 404
        ids = [x["history_item_id"] for x in c.get("/v1/history").json()["history"]]
    assert victim not in ids and len(ids) == 39


def _download(api: httpx.Client, ids: list[str], **extra: object) -> httpx.Response:
    return api.post("/v1/history/download", json={"history_item_ids": ids, **extra})


@pytest.mark.parametrize("fmt", [{}, {"output_format": None}, {"output_format": "default"}])
def test_download_one_is_the_bare_audio(api: httpx.Client, fake_api: FakeApiServer, fmt: dict) -> None:
    item = fake_api.library.items()[3]
    r = _download(api, [item["history_item_id"]], **fmt)
    assert r.status_code == 200 and r.headers["content-type"] == item["content_type"]
    assert r.content == fake_api.library.audio_bytes(item["history_item_id"])


def test_download_one_as_wav(api: httpx.Client, fake_api: FakeApiServer) -> None:
    item_id = fake_api.library.items()[3]["history_item_id"]
    r = _download(api, [item_id], output_format="wav")
    assert r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
    assert r.content == fake_api.library.wav_bytes(item_id)


def _zip(r: httpx.Response) -> zipfile.ZipFile:
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert int(r.headers["content-length"]) == len(r.content)
    return zipfile.ZipFile(io.BytesIO(r.content))


@pytest.mark.parametrize("fmt", [None, "wav"])
def test_download_several_is_a_zip_of_their_audio(api: httpx.Client, fake_api: FakeApiServer, fmt: str | None) -> None:
    ids = [x["history_item_id"] for x in fake_api.library.items()[10:14]]
    zf = _zip(_download(api, ids, output_format=fmt))
    read = fake_api.library.wav_bytes if fmt == "wav" else fake_api.library.audio_bytes
    assert [zf.read(name) for name in zf.namelist()] == [read(i) for i in ids]
    assert zf.testzip() is None


def test_duplicate_ids_make_a_zip_with_unique_names(api: httpx.Client, fake_api: FakeApiServer) -> None:
    item_id = fake_api.library.items()[0]["history_item_id"]
    names = _zip(_download(api, [item_id, item_id])).namelist()
    assert len(names) == len(set(names)) == 2


def test_zip_member_names_are_always_safe(api: httpx.Client, fake_api: FakeApiServer) -> None:
    items = fake_api.library.items()
    one_per_voice = list({x["voice_id"]: x for x in items}.values())
    names = _zip(_download(api, [x["history_item_id"] for x in one_per_voice])).namelist()
    assert len(names) == len(set(names)) == len(one_per_voice)
    assert len({n.split("/")[0] for n in names}) == 1
    for name in names:
        folder, member = name.split("/")
        assert not name.startswith("/") and "\\" not in name and ".." not in name.split("/")
        assert member not in ("", ".", "..") and not member.startswith((".", " "))
        assert all(ord(c) >= 32 and c != "\x7f" for c in name)
        assert len(member.encode()) <= 255 and member.endswith((".mp3", ".wav"))


@pytest.mark.parametrize(("body", "loc"), [
    ({}, ["body", "history_item_ids"]),
    ({"history_item_ids": "abc"}, ["body", "history_item_ids"]),
    ({"history_item_ids": [1]}, ["body", "history_item_ids", 0]),
    ({"history_item_ids": []}, ["body", "history_item_ids"]),
    ({"history_item_ids": ["a"], "output_format": 5}, ["body", "output_format"]),
    ([1, 2], ["body"]),
])
def test_bad_download_body_is_422(api: httpx.Client, body: object, loc: list) -> None:
    r = api.post("/v1/history/download", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc


def test_download_body_not_json_is_422(api: httpx.Client) -> None:
    r = api.post("/v1/history/download", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_bad_output_format_is_400(api: httpx.Client, fake_api: FakeApiServer) -> None:
    r = _download(api, [fake_api.library.items()[0]["history_item_id"]], output_format="mp3")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_output_format" and r.json()["detail"]["status"] == "invalid_output_format"


def test_download_unknown_id_is_404(api: httpx.Client, fake_api: FakeApiServer) -> None:
    r = _download(api, [fake_api.library.items()[0]["history_item_id"], "Missing"])
    assert r.status_code == 404 and "'Missing'" in r.json()["detail"]["message"]


def test_missing_key_is_401_needs_authorization(fake_api: FakeApiServer) -> None:
    r = httpx.get(f"{fake_api.base_url}/v1/history")
    assert r.status_code == 401 and r.json()["detail"]["status"] == "needs_authorization"


def test_wrong_key_is_401_invalid_api_key_and_never_echoed(fake_api: FakeApiServer) -> None:
    secret = "sk_wrong_secret_value_123"
    r = httpx.get(f"{fake_api.base_url}/v1/history/x/audio", headers={"xi-api-key": secret})
    assert r.status_code == 401 and r.json() == {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    assert secret not in r.text and secret not in str(r.headers)
    assert secret not in repr(fake_api.request_log)


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/voices", "/v1/history/a/b", "/v2/history"])
def test_unknown_paths_are_404_not_found(api: httpx.Client, path: str) -> None:
    r = api.get(path)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_wrong_method_is_405(api: httpx.Client) -> None:
    r = api.put("/v1/history")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}


def test_keep_alive_serves_several_requests_on_one_connection(fake_api: FakeApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake_api.port, timeout=10)
    try:
        conn.request("GET", "/v1/history?page_size=1", headers={"xi-api-key": SESSION_KEY})
        conn.getresponse().read()
        sock = conn.sock
        for _ in range(3):
            conn.request("GET", "/v1/history?page_size=2", headers={"xi-api-key": SESSION_KEY})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read()
        assert conn.sock is sock
    finally:
        conn.close()


def test_chunked_request_body_is_read_and_the_connection_stays_usable(api: httpx.Client, fake_api: FakeApiServer) -> None:
    item_id = fake_api.library.items()[0]["history_item_id"]
    body = json.dumps({"history_item_ids": [item_id]}).encode()
    r = api.post("/v1/history/download", content=iter([body[:10], body[10:]]))
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.content == fake_api.library.audio_bytes(item_id)
    assert api.get("/v1/history", params={"page_size": 1}).status_code == 200


def test_bad_content_length_is_400(fake_api: FakeApiServer) -> None:
    with socket.create_connection(("127.0.0.1", fake_api.port), timeout=10) as s:
        s.sendall(b"POST /v1/history/download HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")


def test_stats_count_requests_by_endpoint_and_status(fresh_library: FakeTenant) -> None:
    item_id = fresh_library.library.items()[0]["history_item_id"]
    with fresh_library.client() as c:
        c.get("/v1/history")
        c.get(f"/v1/history/{item_id}/audio")
        c.get("/v1/history/missing")
    stats = fresh_library.library.stats.snapshot()
    assert stats["requests"] == {"list": {"200": 1}, "audio": {"200": 1}, "get": {"404": 1}}
    assert stats["bytes_sent"] > len(fresh_library.library.audio_bytes(item_id))
    log = [e for e in fresh_library.server.request_log if e["tenant"] == fresh_library.library.name]
    assert [e["endpoint"] for e in log[-3:]] == ["list", "audio", "get"]
    assert all(fresh_library.api_key not in str(e) for e in fresh_library.server.request_log)


def test_base_url_is_loopback(fake_api: FakeApiServer) -> None:
    assert urlsplit(fake_api.base_url).hostname == "127.0.0.1"
