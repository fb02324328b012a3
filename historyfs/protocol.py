"""The History API on the wire, without I/O: building requests and reading responses.

Shared by the sync and the async client so there is one copy of every URL, parameter,
header and error rule. Knows HTTP (httpx types), never FUSE or caching.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import quote

import httpx

from . import __version__
from .errors import ApiError, AuthError, BadRequest, MalformedResponse, NotFound, OutcomeUnknown, RateLimited, Unavailable
from .retry import parse_retry_after

SORT_DIRECTIONS = ("asc", "desc")
MAX_PAGE_SIZE = 1000
DOWNLOAD_FORMATS = (None, "default", "wav")
#: The 429 codes of the plan's concurrency limit (legacy ``status`` and current ``code``); any other
#: 429 (``rate_limit_exceeded``, ``system_busy``) is a rate limit.
CONCURRENCY_CODES = frozenset({"too_many_concurrent_requests", "concurrent_limit_exceeded"})
#: The header giving the account's concurrency limit (documented on every response).
ACCOUNT_LIMIT_HEADER = "maximum-concurrent-requests"
#: Answers to HEAD on the audio endpoint that mean "this API offers no HEAD there" (FastAPI: 405).
HEAD_REFUSED = frozenset({405, 501})


@dataclass(frozen=True, slots=True)
class ListFilters:
    """The list endpoint's filters; None means "not sent"."""

    voice_id: str | None = None
    model_id: str | None = None
    date_before_unix: int | None = None
    date_after_unix: int | None = None
    sort_direction: str | None = None
    search: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.sort_direction is not None and self.sort_direction not in SORT_DIRECTIONS:
            raise BadRequest(f"sort_direction must be 'asc' or 'desc', not {self.sort_direction!r}")

    def params(self) -> dict[str, str | int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


class Protocol:
    """Request builder and response reader for one account (key) at one base URL."""

    def __init__(self, api_key: str, base_url: str) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.headers = {
            "xi-api-key": api_key,
            "user-agent": f"historyfs/{__version__}",
            "accept": "*/*",
        }

    def _url(self, path: str) -> str:
        return f"{self.base_url}/v1/{path}"

    @staticmethod
    def _item_path(item_id: str) -> str:
        if not item_id or "\x00" in item_id:
            raise BadRequest(f"bad history item id {item_id!r}")
        return "history/" + quote(item_id, safe="")

    # -- requests: (endpoint name for stats, request) ---------------------------------
    def list_request(self, page_size: int, start_after: str | None, filters: ListFilters) -> tuple[str, httpx.Request]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadRequest(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        params: dict[str, str | int] = {"page_size": page_size}
        if start_after is not None:
            params["start_after_history_item_id"] = start_after
        params.update(filters.params())
        return "list", httpx.Request("GET", self._url("history"), params=params, headers=self.headers)

    def get_request(self, item_id: str) -> tuple[str, httpx.Request]:
        return "get", httpx.Request("GET", self._url(self._item_path(item_id)), headers=self.headers)

    def delete_request(self, item_id: str) -> tuple[str, httpx.Request]:
        return "delete", httpx.Request("DELETE", self._url(self._item_path(item_id)), headers=self.headers)

    def audio_request(self, item_id: str) -> tuple[str, httpx.Request]:
        return "audio", httpx.Request("GET", self._url(self._item_path(item_id) + "/audio"), headers=self.headers)

    def audio_head_request(self, item_id: str) -> tuple[str, httpx.Request]:
        """HEAD on the audio endpoint: its length without its body, where the API offers it."""
        return "audio_head", httpx.Request("HEAD", self._url(self._item_path(item_id) + "/audio"), headers=self.headers)

    def download_request(self, item_ids: Sequence[str], output_format: str | None) -> tuple[str, httpx.Request]:
        if isinstance(item_ids, str) or not item_ids:
            raise BadRequest("download needs a non-empty list of history item ids")
        if output_format not in DOWNLOAD_FORMATS:
            raise BadRequest(f"output_format must be 'wav' or 'default', not {output_format!r}")
        body: dict[str, Any] = {"history_item_ids": list(item_ids)}
        if output_format is not None:
            body["output_format"] = output_format
        return "download", httpx.Request("POST", self._url("history/download"), json=body, headers=self.headers)

    # -- responses ------------------------------------------------------------------
    def error_for(self, request: httpx.Request, response: httpx.Response) -> ApiError:
        """The exception for a non-2xx response whose body has been read."""
        code, message = _error_detail(response)
        what = f"{request.method} {request.url.path}"
        text = self.redact(f"{what}: HTTP {response.status_code}" + (f" {code}" if code else "") + (f": {message}" if message else ""))
        status = response.status_code
        if status in (401, 403):
            return AuthError(text, status=status, code=code)
        if status == 404 or code == "invalid_id":
            return NotFound(text, status=status, code=code)
        if status == 429:
            return RateLimited(text, status=status, code=code, retry_after=parse_retry_after(response.headers.get("retry-after")))
        if status in (408, 409) or status >= 500:
            return Unavailable(text, status=status, code=code)
        if status in (400, 422):
            return BadRequest(text, status=status, code=code)
        return ApiError(text, status=status, code=code)

    def transport_error(self, request: httpx.Request, exc: Exception) -> Unavailable:
        """Unavailable for a failure before the request left (connect, pool), else OutcomeUnknown."""
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        text = self.redact(f"{request.method} {request.url.path}: connection {kind} ({exc.__class__.__name__}: {exc})")
        unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol))
        return Unavailable(text) if unsent else OutcomeUnknown(text)

    def redact(self, text: str) -> str:
        """Belt and braces: no message may carry the key, whatever a server echoes."""
        return text.replace(self._api_key, "***") if self._api_key else text


def is_concurrency_limit(error: ApiError) -> bool:
    """A 429 of the plan's concurrency limit (wait for a slot), as opposed to a rate limit (back off)."""
    return isinstance(error, RateLimited) and error.code in CONCURRENCY_CODES


def body_length(response: httpx.Response) -> int | None:
    """The body length a response announces (Content-Length, identity encoding), else None."""
    length = response.headers.get("content-length", "")
    identity = response.headers.get("content-encoding", "identity") == "identity"
    return int(length) if length.isdigit() and identity else None


def parse_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedResponse(f"{response.request.method} {response.request.url.path}: response is not JSON") from None


def _error_detail(response: httpx.Response) -> tuple[str | None, str | None]:
    """(code, message) from the API's error shapes: detail{status,code,message}, detail[...], {status,message}."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()
        return None, text[:200] or response.reason_phrase or None
    if isinstance(body, Mapping):
        detail = body.get("detail", body)
        if isinstance(detail, Mapping):
            code = detail.get("code") or detail.get("status") or detail.get("error")
            return (str(code) if code else None), _str(detail.get("message"))
        if isinstance(detail, list):
            return "validation_error", "; ".join(_validation_line(d) for d in detail[:5])
        if isinstance(detail, str):
            return None, detail[:200]
    return None, None


def _validation_line(d: Any) -> str:
    if not isinstance(d, Mapping):
        return str(d)[:100]
    loc = ".".join(str(x) for x in d.get("loc", ()) if x not in ("query", "body"))
    return f"{loc}: {d.get('msg', 'invalid')}" if loc else str(d.get("msg", "invalid"))


def _str(v: Any) -> str | None:
    return str(v)[:500] if v is not None else None
