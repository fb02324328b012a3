"""Safe name pieces (pure): cleaning characters, fitting text to a byte budget, the text of a stem, extensions.

Knows nothing of items or views; ``historyfs.layout`` builds every path component from these.
"""

from __future__ import annotations

import re
import unicodedata

NAME_MAX_BYTES = 255
#: Bytes every stem leaves free for its extension (".opus", ".flac", ".json" are the longest).
MAX_EXT_BYTES = 5
#: The longest stem: a name minus the room kept for its extension.
STEM_MAX_BYTES = NAME_MAX_BYTES - MAX_EXT_BYTES
TEXT_SOURCE_CHARS = 100  # only this much of display_text is ever read (the mount keeps 100)
TEXT_CHARS = 40
TEXT_MIN_WORD_CUT = 20  # cut at a space only if that keeps at least this many characters
NO_TEXT = "(no text)"

_EXTENSIONS = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
    "audio/ogg": ".ogg", "audio/opus": ".opus", "audio/flac": ".flac", "audio/aac": ".aac",
    "audio/mp4": ".m4a", "audio/basic": ".pcm", "audio/pcm": ".pcm", "audio/l16": ".pcm",
}  # fmt: skip
UNKNOWN_EXT = ".bin"

_TO_SPACE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TO_DROP = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def clean_chars(text: str) -> str:
    """NFC, no control/bidi/surrogate chars, "/" -> "／", whitespace collapsed and trimmed."""
    if not (text.isascii() and text.isprintable()):
        text = _TO_DROP.sub("", _TO_SPACE.sub(" ", text))
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.replace("/", "\uff0f").split())


def fit(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes on a character boundary."""
    if len(text) * 4 <= max_bytes:
        return text
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max(max_bytes, 0)].decode("utf-8", "ignore")  # a prefix of NFC text stays NFC


def blen(text: str) -> int:
    """Length in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def clean_component(text: str, fallback: str, *, max_bytes: int = NAME_MAX_BYTES) -> str:
    """One safe path component of at most ``max_bytes`` bytes; ``fallback`` if nothing is left.

    ``max_bytes`` (an extension of the interface) lets callers reserve room for a suffix.
    """
    for candidate in (text, fallback, "_"):
        name = fit(clean_chars(candidate or ""), max_bytes).rstrip(" .")
        if name:
            return name
    return "_"[:max_bytes]


def stem_text(display_text: str) -> str:
    """The text part of a stem: the first ~40 characters, cut at a word boundary when possible."""
    text = clean_chars(display_text[:TEXT_SOURCE_CHARS])
    if len(text) > TEXT_CHARS:
        cut = text.rfind(" ", 0, TEXT_CHARS + 1)
        text = text[:cut] if cut >= TEXT_MIN_WORD_CUT else text[:TEXT_CHARS].rstrip()
    return text or NO_TEXT


def extension_for(content_type: str | None) -> str:
    """".mp3" for "audio/mpeg" etc.; parameters ignored, case-insensitive; unknown -> ".bin"."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(mime, UNKNOWN_EXT)
