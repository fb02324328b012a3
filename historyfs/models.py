"""Typed, immutable models of the History API's JSON: the only place that parses it.

Everything past the client works with these frozen dataclasses, never with raw dicts.
``HistoryItem.raw`` is the item exactly as the API sent it, as a deep read-only view, because the
metadata sidecar and exported metadata show "the full item as the API gives it". The parsed dict
itself is kept private and never handed out (``to_json`` gives a copy), so freezing it is done
only when someone asks for ``raw``: listing 20,000 items does not pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import MalformedResponse

#: What an item's audio is when the API does not say (the raw spec's audio endpoint type).
DEFAULT_CONTENT_TYPE = "audio/mpeg"


def _opt_str(d: Mapping[str, Any], key: str) -> str | None:
    """An optional string field; a value of the wrong type is treated as absent."""
    v = d.get(key)
    return v if isinstance(v, str) else None


#: The dates a calendar (and so a folder name) can show: years 1 to 9999.
MIN_DATE_UNIX, MAX_DATE_UNIX = -62135596800, 253402300799


def _date(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MalformedResponse(f"field {key!r} should be a number, got {type(v).__name__}")
    if not MIN_DATE_UNIX <= v <= MAX_DATE_UNIX:  # also rejects NaN and infinities
        raise MalformedResponse(f"field {key!r} is out of range: {v!r}")
    return int(v)


def _freeze(v: Any) -> Any:
    """A deep read-only view of parsed JSON (dicts become mappingproxies, lists tuples)."""
    if isinstance(v, dict):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    """The inverse of ``_freeze``: plain JSON-ready dicts and lists."""
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_thaw(x) for x in v]
    return v


@dataclass(frozen=True, slots=True)
class DialogueLine:
    """One line of a multi-voice (dialogue) item."""

    text: str
    voice_id: str
    voice_name: str


@dataclass(frozen=True, slots=True, eq=False)
class HistoryItem:
    """One generated clip (SpeechHistoryItemResponse)."""

    history_item_id: str
    date_unix: int
    content_type: str
    voice_id: str | None = None
    voice_name: str | None = None
    voice_category: str | None = None
    model_id: str | None = None
    text: str | None = None
    source: str | None = None
    state: str | None = None
    request_id: str | None = None
    output_format: str | None = None
    character_count_change_from: int = 0
    character_count_change_to: int = 0
    dialogue: tuple[DialogueLine, ...] = ()
    source_json: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The parsed JSON object; private to this item (use ``raw`` or ``to_json``)."""

    @classmethod
    def from_json(cls, d: Any) -> HistoryItem:
        """Parse one item; raise MalformedResponse when it cannot be used at all."""
        if not isinstance(d, Mapping):
            raise MalformedResponse(f"history item should be an object, got {type(d).__name__}")
        item_id = d.get("history_item_id")
        if not isinstance(item_id, str) or not item_id or "\x00" in item_id:
            raise MalformedResponse("history item has no usable 'history_item_id'")
        dialogue: list[DialogueLine] = []
        raw_dialogue = d.get("dialogue")
        for line in raw_dialogue if isinstance(raw_dialogue, list) else ():
            if isinstance(line, Mapping):
                dialogue.append(
                    DialogueLine(
                        text=_opt_str(line, "text") or "",
                        voice_id=_opt_str(line, "voice_id") or "",
                        voice_name=_opt_str(line, "voice_name") or "",
                    )
                )
        try:
            date_unix = _date(d, "date_unix")
        except MalformedResponse as exc:
            raise MalformedResponse(f"history item {item_id!r}: {exc}") from None
        return cls(
            history_item_id=item_id,
            date_unix=date_unix,
            content_type=_opt_str(d, "content_type") or DEFAULT_CONTENT_TYPE,
            voice_id=_opt_str(d, "voice_id") or None,
            voice_name=_opt_str(d, "voice_name"),
            voice_category=_opt_str(d, "voice_category"),
            model_id=_opt_str(d, "model_id"),
            text=_opt_str(d, "text"),
            source=_opt_str(d, "source"),
            state=_opt_str(d, "state"),
            request_id=_opt_str(d, "request_id"),
            output_format=_opt_str(d, "output_format"),
            character_count_change_from=_safe_int(d, "character_count_change_from"),
            character_count_change_to=_safe_int(d, "character_count_change_to"),
            dialogue=tuple(dialogue),
            source_json=dict(d),
        )

    @property
    def character_cost(self) -> int:
        return self.character_count_change_to - self.character_count_change_from

    @property
    def is_dialogue(self) -> bool:
        return bool(self.dialogue) and not self.voice_id

    @property
    def display_text(self) -> str:
        """The text a person knows the clip by: its text, or a dialogue's first line."""
        if self.text:
            return self.text
        return next((line.text for line in self.dialogue if line.text), "")

    @property
    def raw(self) -> Mapping[str, Any]:
        """The item as the API gave it: a deep read-only view."""
        return _freeze(self._json())

    def _json(self) -> Mapping[str, Any]:
        return self.source_json or {"history_item_id": self.history_item_id, "date_unix": self.date_unix}

    def to_json(self) -> dict[str, Any]:
        """The item as the API gave it, as a fresh plain dict."""
        return _thaw(self._json())

    def to_json_bytes(self) -> bytes:
        """The metadata sidecar's content: pretty, sorted, UTF-8, newline-terminated."""
        return (json.dumps(self._json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HistoryItem) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.history_item_id)


def _safe_int(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return 0
    return int(v)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of GET /v1/history (GetSpeechHistoryResponse)."""

    items: tuple[HistoryItem, ...]
    has_more: bool
    last_history_item_id: str | None
    scanned_until: int | None = None

    @classmethod
    def from_json(cls, d: Any) -> HistoryPage:
        if not isinstance(d, Mapping) or not isinstance(d.get("history"), list):
            raise MalformedResponse("history listing should be an object with a 'history' array")
        has_more = d.get("has_more")
        if not isinstance(has_more, bool):
            raise MalformedResponse("history listing has no boolean 'has_more'")
        last = d.get("last_history_item_id")
        scanned = d.get("scanned_until")
        return cls(
            items=tuple(HistoryItem.from_json(x) for x in d["history"]),
            has_more=has_more,
            last_history_item_id=last if isinstance(last, str) else None,
            scanned_until=int(scanned) if isinstance(scanned, int) and not isinstance(scanned, bool) else None,
        )
