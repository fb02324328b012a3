"""The /_fake admin endpoints and the FakeApiServer Python API (tenants, lifecycle)."""

from __future__ import annotations

import secrets
import socket

import httpx
import pytest

from historyfs.fakeapi import FakeApiServer
from tests.fixtures.fake_api import SESSION_KEY, FakeTenant


def test_add_item_over_http_shows_up_first(fresh_library: FakeTenant) -> None:
    with fresh_library.client() as c:
        r = c.post("/_fake/items", json={"text": "Brand new clip", "voice_name": "Rachel"})
        assert r.status_code == 201
        new = r.json()
        first = c.get("/v1/history", params={"page_size": 1}).json()["history"][0]
    assert first == new and new["text"] == "Brand new clip"
    assert fresh_library.library.get(new["history_item_id"]) == new


def test_stats_over_http(fresh_library: FakeTenant) -> None:
    with fresh_library.client() as c:
        c.get("/v1/history")
        body = c.get("/_fake/stats").json()
    assert body["tenant"]["requests"] == {"list": {"200": 1}}
    assert body["server"]["total"] >= 1


def test_create_a_tenant_over_http(fake_api: FakeApiServer) -> None:
    key = "http-tenant-" + secrets.token_hex(4)
    try:
        url = f"{fake_api.base_url}/_fake/tenants"
        r = httpx.post(url, json={"items": 12, "seed": 4}, headers={"xi-api-key": key})
        assert r.status_code == 201 and r.json() == {"items": 12}
        assert httpx.post(url, json={}, headers={"xi-api-key": key}).status_code == 409
        listing = httpx.get(f"{fake_api.base_url}/v1/history", headers={"xi-api-key": key}).json()
        assert len(listing["history"]) == 12
    finally:
        fake_api.remove_tenant(key)
    assert fake_api.tenant(key) is None


@pytest.mark.parametrize(("method", "path", "headers", "status"), [
    ("GET", "/_fake/stats", {}, 401),
    ("GET", "/_fake/stats", {"xi-api-key": "wrong"}, 401),
    ("GET", "/_fake/nothing", {"xi-api-key": SESSION_KEY}, 404),
    ("DELETE", "/_fake/stats", {"xi-api-key": SESSION_KEY}, 405),
])
def test_admin_errors(fake_api: FakeApiServer, method: str, path: str, headers: dict, status: int) -> None:
    assert httpx.request(method, fake_api.base_url + path, headers=headers).status_code == status


def test_admin_bad_json_is_422(fresh_library: FakeTenant) -> None:
    with fresh_library.client() as c:
        r = c.post("/_fake/items", content=b"[not json")
    assert r.status_code == 422 and r.json()["detail"]["status"] == "invalid_request"


def test_tenants_are_isolated(fake_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = fake_tenant(items=5, seed=1), fake_tenant(items=5, seed=1)
    victim = a.library.items()[0]["history_item_id"]
    with a.client() as c:
        assert c.delete(f"/v1/history/{victim}").status_code == 200
    with b.client() as c:
        assert c.get(f"/v1/history/{victim}").status_code == 200
    with pytest.raises(ValueError):
        a.server.add_tenant(a.api_key)


def test_server_lifecycle_frees_the_port_and_drops_connections() -> None:
    with FakeApiServer(items=3, seed=1, api_key="k") as srv:
        url = srv.base_url
        client = httpx.Client(base_url=url, headers={"xi-api-key": "k"})
        assert client.get("/v1/history").status_code == 200  # leaves a keep-alive connection open
    try:
        with pytest.raises(httpx.TransportError):
            client.get("/v1/history")
    finally:
        client.close()
    with pytest.raises(RuntimeError):
        srv.base_url  # noqa: B018


def test_bound_to_loopback_only() -> None:
    with FakeApiServer(items=1, seed=1) as srv:
        assert srv._httpd is not None and srv._httpd.server_address[0] == "127.0.0.1"
        outside = _non_loopback_address()
        if outside is None:
            pytest.skip("this machine has no non-loopback IPv4 address to try")
        with pytest.raises(OSError):
            socket.create_connection((outside, srv.port), timeout=2).close()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr
