"""The /v1/history endpoints: one function per endpoint, from (library, request) to Response.

Auth, faults and the wire format are not handled here (see app.py and handler.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .library import Library
from .records import Record
from .responses import (
    Request, Response, item_not_found, json_response, method_not_allowed, validation_error,
)
from .validation import BadOutputFormat, Invalid, parse_download, parse_list_query
from .zipper import zip_response

Handler = Callable[[Library, Request, str], Response]


def list_history(lib: Library, req: Request, _: str = "") -> Response:
    try:
        q = parse_list_query(req)
        page, has_more = lib.page(q)
    except Invalid as exc:
        return validation_error(exc.errors)
    except KeyError as exc:
        return item_not_found(str(exc.args[0]))
    return json_response(200, {
        "history": [r.to_json() for r in page],
        "has_more": has_more,
        "last_history_item_id": page[-1].history_item_id if page else None,
        "scanned_until": page[-1].date_unix if page else None,
    })


def get_item(lib: Library, req: Request, item_id: str) -> Response:
    r = lib.record(item_id)
    return item_not_found(item_id) if r is None else json_response(200, r.to_json())


def delete_item(lib: Library, req: Request, item_id: str) -> Response:
    try:
        lib.delete(item_id)
    except KeyError:
        return item_not_found(item_id)
    return json_response(200, {"status": "ok"})


def head_audio(lib: Library, req: Request, item_id: str) -> Response:
    """HEAD /v1/history/{id}/audio (only with the ``head`` switch): GET's headers, no body."""
    return get_audio(lib, req, item_id)


def _audio_response(r: Record, fmt: str | None) -> Response:
    content_type, size, chunks = r.audio(fmt)
    return Response(200, content_type=content_type, stream=chunks, length=size)


def get_audio(lib: Library, req: Request, item_id: str) -> Response:
    r = lib.record(item_id)
    return item_not_found(item_id) if r is None else _audio_response(r, None)


def download(lib: Library, req: Request, _: str = "") -> Response:
    try:
        ids, fmt = parse_download(req)
    except Invalid as exc:
        return validation_error(exc.errors)
    except BadOutputFormat:
        message = "output_format must be wav or none"
        return json_response(400, {"error": "invalid_output_format", "message": message,
                                   "detail": {"status": "invalid_output_format", "message": message}})
    records = []
    for item_id in ids:
        r = lib.record(item_id)
        if r is None:
            return item_not_found(item_id)
        records.append(r)
    return _audio_response(records[0], fmt) if len(records) == 1 else zip_response(records, fmt)


# (method, path pattern, endpoint name, handler); {id} is any one path segment
ROUTES: tuple[tuple[str, re.Pattern[str], str, Handler], ...] = (
    ("GET", re.compile(r"/v1/history"), "list", list_history),
    ("POST", re.compile(r"/v1/history/download"), "download", download),
    ("GET", re.compile(r"/v1/history/([^/]+)"), "get", get_item),
    ("DELETE", re.compile(r"/v1/history/([^/]+)"), "delete", delete_item),
    ("GET", re.compile(r"/v1/history/([^/]+)/audio"), "audio", get_audio),
    ("HEAD", re.compile(r"/v1/history/([^/]+)/audio"), "audio_head", head_audio),
)


def route(method: str, path: str, *, head: bool = False) -> tuple[str, Callable[[Library, Request], Response]] | Response | None:
    """(endpoint, bound handler) for a /v1 request; a 405 Response; or None (no such path).

    HEAD routes exist only when ``head`` is on; otherwise HEAD is 405 like any method a path
    lacks (FastAPI adds no HEAD to GET routes, unlike bare Starlette)."""
    allowed: list[str] = []
    for m, pattern, endpoint, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match is None or (m == "HEAD" and not head):
            continue
        allowed.append(m)
        if m == method:
            arg = match.group(1) if match.groups() else ""
            return endpoint, lambda lib, req, _h=handler, _a=arg: _h(lib, req, _a)
    return method_not_allowed(", ".join(allowed)) if allowed else None
