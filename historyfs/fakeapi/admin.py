"""Loopback admin endpoints under /_fake (never subject to faults); xi-api-key picks the tenant.

    POST /_fake/items     body: item field overrides      -> 201 the new item
    PUT  /_fake/faults    body: Faults fields             -> 200 the faults now in force
    GET  /_fake/faults                                    -> 200 the faults now in force
    GET  /_fake/stats                                     -> 200 {"tenant": {...}, "server": {...}}
                                                             tenant.concurrency: {in_flight, peak, limit}
    POST /_fake/tenants   body: {"items": N, "seed": S}   -> 201 creates a tenant for this key
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

from .faults import Faults
from .library import Library
from .responses import Request, Response, app_error, json_response, method_not_allowed, route_not_found

PREFIX = "/_fake/"


class AdminTarget(Protocol):
    """What the admin endpoints need from the server."""

    def tenant(self, api_key: str) -> Library | None: ...
    def add_tenant(self, api_key: str, items: int = ..., seed: int | None = ...) -> Library: ...
    def set_faults(self, faults: Faults) -> None: ...
    def get_faults(self) -> Faults: ...
    def stats(self) -> dict[str, Any]: ...
    def concurrency(self, lib: Library) -> dict[str, int]: ...


def _body(req: Request) -> dict[str, Any]:
    doc = json.loads(req.body or b"{}")
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    return doc


def _faults(server: AdminTarget, req: Request, lib: Library) -> Response:
    if req.method == "PUT":
        server.set_faults(Faults(**_body(req)))
    return json_response(200, dataclasses.asdict(server.get_faults()))


def _items(server: AdminTarget, req: Request, lib: Library) -> Response:
    return json_response(201, lib.add_item(**_body(req)))


def _stats(server: AdminTarget, req: Request, lib: Library) -> Response:
    tenant = {**lib.stats.snapshot(), "concurrency": server.concurrency(lib)}
    return json_response(200, {"tenant": tenant, "server": server.stats()})


_ROUTES = {
    ("PUT", "faults"): _faults, ("GET", "faults"): _faults,
    ("POST", "items"): _items,
    ("GET", "stats"): _stats,
}
_PATHS = {"faults", "items", "stats", "tenants"}


def _add_tenant(server: AdminTarget, req: Request, key: str) -> Response:
    if server.tenant(key) is not None:
        return app_error(409, "tenant_exists", "A tenant already uses this key.")
    doc = _body(req)
    lib = server.add_tenant(key, items=int(doc.get("items", 50)), seed=doc.get("seed"))
    return json_response(201, {"items": len(lib)})


def _dispatch(server: AdminTarget, req: Request, name: str, key: str) -> Response:
    if (req.method, name) == ("POST", "tenants"):
        return _add_tenant(server, req, key)
    handler = _ROUTES.get((req.method, name))
    if handler is None:
        return method_not_allowed() if name in _PATHS else route_not_found()
    lib = server.tenant(key)
    if lib is None:
        return app_error(401, "invalid_api_key", "Invalid API key")
    return handler(server, req, lib)


def handle(server: AdminTarget, req: Request) -> Response:
    """Answer one /_fake request; bad bodies are 422 with one clear message."""
    key = req.headers.get("xi-api-key")
    if not key:
        return app_error(401, "needs_authorization", "The admin endpoints need the tenant's xi-api-key.")
    try:
        return _dispatch(server, req, req.path[len(PREFIX):], key)
    except (ValueError, TypeError) as exc:  # JSON errors are ValueErrors too
        return app_error(422, "invalid_request", f"{exc.__class__.__name__}: {exc}")
