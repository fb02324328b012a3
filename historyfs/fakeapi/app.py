"""The request pipeline, independent of sockets: admin or API, faults, auth, then the endpoint.

For /v1 paths: outage (-> reset), latency, rate limit (429), injected 5xx, auth (401), route.
/_fake admin requests skip every fault. ``handle`` returns a Response, or None when the
connection must be reset without an answer. The pipeline reads ``xi-api-key`` only to pick
the tenant; the key never reaches a response, a log line or an exception.
"""

from __future__ import annotations

import time
from typing import Protocol

from . import admin, routes
from .faults import FaultInjector
from .library import Library
from .responses import (
    Request, Response, invalid_api_key, needs_authorization, rate_limited, route_not_found, server_failure,
)


class Tenants(Protocol):
    """What the pipeline needs from the server."""

    faults: FaultInjector

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
    """A /v1 request through faults, auth and the endpoint."""
    if server.faults.outage:
        return None
    found = routes.route(req.method, req.path)
    endpoint = found[0] if isinstance(found, tuple) else "other"
    resp = _injected(server.faults)
    lib: Library | Response | None = None
    if resp is None:
        lib = authenticate(server, req)
        resp = lib if isinstance(lib, Response) else _call(found, lib, req)
    resp.endpoint = endpoint
    resp.tenant = lib if isinstance(lib, Library) else None
    return resp


def _call(found: object, lib: Library, req: Request) -> Response:
    if isinstance(found, tuple):
        return found[1](lib, req)
    return found if isinstance(found, Response) else route_not_found()


def handle(server: Server, req: Request) -> Response | None:
    """Any request: /_fake admin (no faults) or the API."""
    if req.path.startswith(admin.PREFIX):
        resp = admin.handle(server, req)
        resp.endpoint = "admin"
        return resp
    if req.path.startswith("/v1/"):
        return handle_api(server, req)
    resp = route_not_found()
    resp.endpoint = "other"
    return resp
