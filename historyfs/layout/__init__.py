"""PURE mapping between history items and paths: views, folder scheme, file names, sanitising, collisions.

No I/O, no clock, no mutable globals: the same items and time zone always give the same paths,
on every machine. The mount and the exporters both use it, so an S3 key and a mount path agree.
The one place views, kinds, names and cache keys are defined; split by concept into ``paths``
(views, kinds, ``Placement``, file names), ``placing`` (``Layout.place_all``), ``clean`` (safe
name pieces) and ``selection`` (what a folder selects: `--path`, recent/, search/ names).

Scheme (MONTH = YYYY-MM, DAY = YYYY-MM-DD, in the chosen time zone):
    by-date/<MONTH>/<DAY>/<voice>/<stem><ext>
    by-model/<model>/<MONTH>/<DAY>/<stem><ext>
    by-voice/<voice>/<MONTH>/<DAY>/<stem><ext>
    recent/<flat stem><ext>                      the newest items (RECENT_DEFAULT, ``newest``)
    search/<words>/<flat stem><ext>              what the API's search finds for <words>
with the metadata sidecar ``<stem>.json`` beside each audio file, and optionally ``<stem>.wav``.
``<stem>`` is ``HH-MM-SS <start of text> [<item id prefix>]``; the flat views' ``<flat stem>`` is
``YYYY-MM-DD HH-MM-SS <voice> - <start of text> [<item id prefix>]`` (``paths.flat_stem``).

Rules (decided here, relied on by the mount and the exporters):
- Names are NFC, valid UTF-8, at most 255 bytes (every stem leaves room for a 5-byte extension),
  never "", "." or "..". Control characters (C0, DEL, C1, U+2028/2029) become spaces, bidi
  controls, BOM and lone surrogates are dropped, whitespace runs collapse to one space, "/"
  becomes "／" (U+FF0F, as rclone does). "\\" and ":" are kept: they are legal on Linux.
  Leading dots are kept; trailing dots and spaces are stripped.
- Voice folder: the cleaned voice name of the voice's OLDEST item (so a later rename, or a newer
  item that brings a name, does not move older files); dialogue items go to "Dialogue", items
  without voice id or name to "Unknown voice". A voice with an id but no name is
  "Unknown voice (<id6>)". When several voice keys get names equal ignoring case (clients on
  macOS/SMB fold case), each member of the group except a pseudo-voice
  gets " (<first 6 chars of voice id>)" (voices known only by name: 6 hex chars of sha256(name));
  if that is still ambiguous the group's suffixes grow one character at a time, then get "~N".
- Model folder: the model id cleaned like a voice name; items without a model id go to
  "Unknown model". Model ids equal ignoring case after cleaning get " (<6 hex chars of
  sha256(model id)>)", as voices known only by name do.
- Stems: unique per day ignoring case (by-model and the flat views mix voices in one folder).
  Colliding items (same second, same text start, same id prefix) all get a longer id part, one
  character at a time, then "~N" in (date, id) order.
- Flat stems: unique among all items ignoring case, so any set of items (recent/, a search's
  results) can share a folder. The voice part is cut to fit 255 bytes; the rare flat stems that
  still collide (only items of one second can) get "~N" after the voice, the oldest keeping its name.
- Stability: an item's path depends only on itself, its voice's oldest name, its model and the
  items of its day. Adding an item changes another item's path only if it creates a new collision
  (its stem equals, ignoring case, a stem of that day or a lengthened one) or it is older than
  every earlier item of its voice and names that voice differently.
- Time: HH-MM-SS is wall-clock time, so stems sort in time order within a day, and flat stems in
  time order, except in the hour a DST fall-back repeats. Dates are clamped to 0001-01-03 ..
  9999-12-29 UTC (negative ok).
- A native ".wav" item's optional wav file IS its audio file: ``audio_name("wav") == audio_name()``.
"""

from __future__ import annotations

from .clean import (
    MAX_EXT_BYTES,
    NAME_MAX_BYTES,
    NO_TEXT,
    TEXT_CHARS,
    TEXT_SOURCE_CHARS,
    UNKNOWN_EXT,
    clean_component,
    extension_for,
    stem_text,
)
from .paths import (
    AUDIO,
    BY_DATE,
    BY_MODEL,
    BY_VOICE,
    CONTROL_DIR,
    FLAT_SEPARATOR,
    FLAT_VIEWS,
    KINDS,
    RECENT,
    RECENT_DEFAULT,
    SEARCH,
    SIDECAR,
    SIDECAR_EXT,
    STATS_FILE,
    TREE_VIEWS,
    UNKNOWN_MODEL_DIR,
    VIEWS,
    WAV,
    WAV_EXT,
    Placement,
    cache_key,
    cache_keys,
    dir_parts,
    file_depth,
    file_name,
    flat_stem,
    item_kinds,
    split_name,
)
from .placing import (
    DIALOGUE_DIR,
    DIALOGUE_KEY,
    ID_CHARS,
    UNKNOWN_KEY,
    UNKNOWN_VOICE_DIR,
    Layout,
    Placeable,
    model_key,
    voice_key,
)
from .selection import PROBE_NAMES, is_probe, newest, search_query, split_selection

__all__ = [
    "AUDIO", "BY_DATE", "BY_MODEL", "BY_VOICE", "CONTROL_DIR", "DIALOGUE_DIR", "DIALOGUE_KEY", "FLAT_SEPARATOR",
    "FLAT_VIEWS", "ID_CHARS", "KINDS", "MAX_EXT_BYTES", "NAME_MAX_BYTES", "NO_TEXT", "PROBE_NAMES", "RECENT",
    "RECENT_DEFAULT", "SEARCH", "SIDECAR", "SIDECAR_EXT", "STATS_FILE", "TEXT_CHARS", "TEXT_SOURCE_CHARS",
    "TREE_VIEWS", "UNKNOWN_EXT", "UNKNOWN_KEY", "UNKNOWN_MODEL_DIR", "UNKNOWN_VOICE_DIR", "VIEWS", "WAV", "WAV_EXT",
    "Layout", "Placeable", "Placement", "cache_key", "cache_keys", "clean_component", "dir_parts", "extension_for",
    "file_depth", "file_name", "flat_stem", "is_probe", "item_kinds", "model_key", "newest", "search_query",
    "split_name", "split_selection", "stem_text", "voice_key",
]  # fmt: skip
