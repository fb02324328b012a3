"""What a handler returns (``Request`` in, ``Response`` out) and the API's error bodies.

Bodies are JSON like Starlette's JSONResponse (UTF-8, compact). Error shapes follow the spec:
application errors ``{"detail": {"status", "message"}}``, validation ``{"detail": [...]}``
(FastAPI/pydantic v2 style), unknown routes ``{"detail": "Not Found"}``. Nothing here ever
sees or echoes the API key: handlers get it only as the tenant it selects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request (headers lower-cased)."""

    method: str
    path: str
    target: str  # path and query as sent, for the request log
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        """The last value of a query parameter (FastAPI takes the last of repeats)."""
        values = self.params.get(name)
        return values[-1] if values else None


@dataclass(slots=True)
class Response:
    """A full response: a bytes body, or a stream of ``length`` bytes."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterable[bytes | memoryview] | None = None
    length: int | None = None
    on_close: Callable[[], None] | None = None
    endpoint: str = "other"
    tenant: Any = None  # the Library the key selected, for per-tenant stats
    chunked: bool = False  # send the body with Transfer-Encoding: chunked, no Content-Length
    limited: str | None = None  # "concurrency" or "rate" for the two kinds of 429, for stats

    @property
    def content_length(self) -> int:
        return len(self.body) if self.stream is None else int(self.length or 0)

    def chunks(self) -> Iterable[bytes | memoryview]:
        return (self.body,) if self.stream is None else self.stream

    def close(self) -> None:
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def also_on_close(self, action: Callable[[], None]) -> None:
        """Run ``action`` when the response is closed, after what is already due then."""
        before = self.on_close

        def both() -> None:
            try:
                if before is not None:
                    before()
            finally:
                action()

        self.on_close = both


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, obj: Any, **headers: str) -> Response:
    return Response(status, json_bytes(obj), headers=dict(headers))


def app_error(status: int, code: str, message: str, **headers: str) -> Response:
    """The service's application error: {"detail": {"status": code, "message": message}}."""
    return json_response(status, {"detail": {"status": code, "message": message}}, **headers)


def validation_error(errors: list[dict[str, Any]]) -> Response:
    return json_response(422, {"detail": errors})


def item_not_found(item_id: str) -> Response:
    return app_error(404, "invalid_id", f"A history item with ID '{item_id}' was not found on the server.")


def route_not_found() -> Response:
    return json_response(404, {"detail": "Not Found"})


def method_not_allowed(allow: str | None = None) -> Response:
    """FastAPI's 405 (with Starlette's Allow header when the path's methods are known)."""
    return json_response(405, {"detail": "Method Not Allowed"}, **({"Allow": allow} if allow else {}))


def needs_authorization() -> Response:
    return app_error(401, "needs_authorization", "Neither authorization header nor xi-api-key received, please provide one.")


def invalid_api_key() -> Response:
    return app_error(401, "invalid_api_key", "Invalid API key")


def server_failure(status: int) -> Response:
    """500 is bare ({"status", "message"}) as seen from the service; 503 uses detail."""
    if status == 500:
        return json_response(500, {"status": "internal_server_error", "message": "An internal server error occurred."})
    return app_error(503, "service_unavailable", "The service is temporarily unavailable, please retry.")


def rate_limited(retry_after: int) -> Response:
    resp = app_error(429, "rate_limit_exceeded", "Too many requests, please slow down.", **{"Retry-After": str(retry_after)})
    resp.limited = "rate"
    return resp


def concurrency_limited(limit: int) -> Response:
    """The plan's concurrency limit: legacy ``status`` and current ``code`` both present, no Retry-After."""
    message = (f"Too many concurrent requests: your plan allows {limit} at once. "
               "Wait for a request to finish, or upgrade your plan.")
    detail = {"status": "too_many_concurrent_requests", "code": "concurrent_limit_exceeded", "message": message}
    resp = json_response(429, {"detail": detail})
    resp.limited = "concurrency"
    return resp
