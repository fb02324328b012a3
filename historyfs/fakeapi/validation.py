"""Request validation with FastAPI/pydantic-v2-shaped 422 errors (and the download's 400).

``parse_list_query`` turns GET /v1/history's query into a ListQuery; ``parse_download``
checks POST /v1/history/download's JSON body. Both raise ``Invalid`` carrying the
``detail`` list; a bad ``output_format`` string raises ``BadOutputFormat`` (400).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .catalog import ALL_SOURCES
from .query import ListQuery
from .responses import Request

MAX_PAGE_SIZE = 1000
OUTPUT_FORMATS = ("wav", "default")
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


class Invalid(Exception):
    """422: the request does not validate; ``errors`` is FastAPI's ``detail`` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


class BadOutputFormat(Exception):
    """400: output_format is a string other than "wav" or "default"."""


def _err(kind: str, loc: list[Any], msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        e["ctx"] = ctx
    return e


def _int_param(req: Request, name: str, errors: list[dict[str, Any]], lo: int | None = None, hi: int | None = None) -> int | None:
    raw = req.param(name)
    if raw is None:
        return None
    loc = ["query", name]
    if not _INT_RE.match(raw):
        errors.append(_err("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", raw))
        return None
    value = int(raw)
    if lo is not None and value < lo:
        errors.append(_err("greater_than_equal", loc, f"Input should be greater than or equal to {lo}", raw, ge=lo))
    elif hi is not None and value > hi:
        errors.append(_err("less_than_equal", loc, f"Input should be less than or equal to {hi}", raw, le=hi))
    return value


def _enum_param(req: Request, name: str, allowed: tuple[str, ...], errors: list[dict[str, Any]]) -> str | None:
    raw = req.param(name)
    if raw is None or raw in allowed:
        return raw
    expected = ", ".join(f"'{a}'" for a in allowed[:-1]) + f" or '{allowed[-1]}'"
    errors.append(_err("enum", ["query", name], f"Input should be {expected}", raw, expected=expected))
    return None


def parse_list_query(req: Request) -> ListQuery:
    """The ListQuery of a GET /v1/history request; Invalid on any bad parameter."""
    errors: list[dict[str, Any]] = []
    page_size = _int_param(req, "page_size", errors, 1, MAX_PAGE_SIZE)
    before = _int_param(req, "date_before_unix", errors)
    after = _int_param(req, "date_after_unix", errors)
    direction = _enum_param(req, "sort_direction", ("asc", "desc"), errors)
    source = _enum_param(req, "source", ALL_SOURCES, errors)
    if errors:
        raise Invalid(errors)
    return ListQuery(
        page_size=100 if page_size is None else page_size,
        start_after_history_item_id=req.param("start_after_history_item_id"),
        voice_id=req.param("voice_id"),
        model_id=req.param("model_id"),
        date_before_unix=before,
        date_after_unix=after,
        sort_direction=direction or "desc",
        search=req.param("search") or None,
        source=source,
    )


def _json_body(body: bytes) -> Any:
    if not body.strip():
        raise Invalid([_err("missing", ["body"], "Field required", None)])
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        pos = getattr(exc, "pos", 0) or 0
        raise Invalid([_err("json_invalid", ["body", pos], "JSON decode error", {}, error=str(exc).split(":")[0])]) from None


def _ids(doc: dict[str, Any]) -> list[str]:
    ids = doc.get("history_item_ids")
    loc = ["body", "history_item_ids"]
    if "history_item_ids" not in doc:
        raise Invalid([_err("missing", loc, "Field required", doc)])
    if not isinstance(ids, list):
        raise Invalid([_err("list_type", loc, "Input should be a valid list", ids)])
    bad = [_err("string_type", [*loc, i], "Input should be a valid string", x) for i, x in enumerate(ids) if not isinstance(x, str)]
    if bad:
        raise Invalid(bad)
    if not ids:
        raise Invalid([_err("too_short", loc, "List should have at least 1 item after validation, not 0", ids,
                            field_type="List", min_length=1, actual_length=0)])
    return ids


def parse_download(req: Request) -> tuple[list[str], str | None]:
    """(ids, "wav" or None) of a download request; Invalid (422) or BadOutputFormat (400)."""
    doc = _json_body(req.body)
    if not isinstance(doc, dict):
        raise Invalid([_err("model_attributes_type", ["body"], "Input should be a valid dictionary or object to extract fields from", doc)])
    ids = _ids(doc)
    fmt = doc.get("output_format")
    if fmt is not None and not isinstance(fmt, str):
        raise Invalid([_err("string_type", ["body", "output_format"], "Input should be a valid string", fmt)])
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise BadOutputFormat(fmt)
    return ids, "wav" if fmt == "wav" else None
