"""The request pipeline, independent of sockets: admin or API, faults, auth, then the endpoint.

For /v1 paths: outage (-> reset), a concurrency slot for the key's tenant (429 when none frees
up within the queue time), latency, rate limit (429), injected 5xx, auth (401), route. The slot
is given back when the response is closed, i.e. after its last byte went out. /_fake admin
requests skip every fault and are never counted. Every response carries the two concurrency
headers. ``handle`` returns a Response, or None when the connection must be reset without an
answer. The pipeline reads ``xi-api-key`` only to pick the tenant; the key never reaches a
response, a log line or an exception.
"""

from __future__ import annotations

import time
from typing import Protocol

from . import admin, routes
from .concurrency import ConcurrencyGate, Slot
from .faults import FaultInjector
from .library import Library
from .responses import (
    Request, Response, concurrency_limited, invalid_api_key, needs_authorization, rate_limited, route_not_found,
    server_failure,
)

#: Endpoints whose 2xx bodies are sent chunked under the ``chunked_audio`` switch.
AUDIO_ENDPOINTS = frozenset({"audio", "audio_head", "download"})


class Tenants(Protocol):
    """What the pipeline needs from the server."""

    faults: FaultInjector
    gate: ConcurrencyGate

    def tenant(self, api_key: str) -> Library | None: ...


class Server(admin.AdminTarget, Tenants, Protocol):
    """The admin target that also holds the fault injector: what ``handle`` needs."""


def authenticate(server: Tenants, req: Request) -> Library | Response:
    """The tenant the request's xi-api-key selects, or the 401 to answer."""
    key = req.headers.get("xi-api-key")
    if not key:
        return needs_authorization()
    lib = server.tenant(key)
    return invalid_api_key() if lib is None else lib


def _injected(faults: FaultInjector) -> Response | None:
    delay = faults.delay()
    if delay:
        time.sleep(delay)
    retry_after = faults.rate_limited()
    if retry_after is not None:
        return rate_limited(retry_after)
    status = faults.failure()
    return server_failure(status) if status is not None else None


def handle_api(server: Tenants, req: Request) -> Response | None:
    """A /v1 request through its concurrency slot, faults, auth and the endpoint."""
    if server.faults.outage:
        return None
    faults = server.faults.faults
    found = routes.route(req.method, req.path, head=faults.head)
    tenant = server.tenant(req.headers.get("xi-api-key") or "")
    slot = server.gate.acquire(tenant, faults.concurrency_limit) if tenant is not None else None
    if tenant is not None and slot is None:
        resp = concurrency_limited(faults.concurrency_limit)
        current = server.gate.in_flight(tenant)
    else:
        resp = _answer(server, req, found, slot)
        current = slot.current if slot is not None else 0
    resp.endpoint = found[0] if isinstance(found, tuple) else "other"
    resp.tenant = tenant
    resp.chunked = faults.chunked_audio and resp.endpoint in AUDIO_ENDPOINTS and 200 <= resp.status < 300
    return _with_concurrency_headers(resp, current, faults.concurrency_limit)


def _answer(server: Tenants, req: Request, found: object, slot: Slot | None) -> Response:
    """Faults, auth and the endpoint, holding ``slot`` until the response is closed."""
    try:
        resp = _injected(server.faults)
        if resp is None:
            lib = authenticate(server, req)
            resp = lib if isinstance(lib, Response) else _call(found, lib, req)
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    if slot is not None:
        resp.also_on_close(slot.release)
    return resp


def _with_concurrency_headers(resp: Response, current: int, limit: int) -> Response:
    """The service's two headers; a limit of 0 says the fake enforces none."""
    resp.headers["current-concurrent-requests"] = str(current)
    resp.headers["maximum-concurrent-requests"] = str(limit)
    return resp


def _call(found: object, lib: Library, req: Request) -> Response:
    if isinstance(found, tuple):
        return found[1](lib, req)
    return found if isinstance(found, Response) else route_not_found()


def handle(server: Server, req: Request) -> Response | None:
    """Any request: /_fake admin (no faults) or the API."""
    if req.path.startswith("/v1/"):
        return handle_api(server, req)
    resp = admin.handle(server, req) if req.path.startswith(admin.PREFIX) else route_not_found()
    resp.endpoint = "admin" if req.path.startswith(admin.PREFIX) else "other"
    tenant = server.tenant(req.headers.get("xi-api-key") or "")
    current = server.gate.in_flight(tenant) if tenant is not None else 0
    return _with_concurrency_headers(resp, current, server.faults.faults.concurrency_limit)
