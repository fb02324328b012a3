"""--state FILE: the default library's deletes and additions, persisted across restarts.

The file is JSON ``{"version": 1, "seed": S, "deleted": [ids], "added": [items]}`` where each
added item is its API JSON plus ``_seq`` and ``_audio_frames``. It is rewritten atomically
(temporary file in the same folder, fsync, rename) after every change.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .library import Library, apply_overrides
from .records import Record

VERSION = 1


class StateError(Exception):
    """The state file exists but cannot be used."""


def _record_json(r: Record) -> dict[str, Any]:
    return {**r.to_json(), "_seq": r.seq, "_audio_frames": r.audio_frames}


def _record_from_json(d: dict[str, Any]) -> Record:
    d = dict(d)
    r = Record(history_item_id=d.pop("history_item_id"), seq=int(d.pop("_seq")), date_unix=int(d.pop("date_unix")),
               request_id=None, voice_id=None, voice_name=None, voice_category=None, model_id=None, text=None,
               source=None, settings=None, character_count_change_from=0, character_count_change_to=0,
               content_type="audio/mpeg", output_format=None, audio_frames=int(d.pop("_audio_frames")))
    for served_as_null in ("feedback", "share_link_id", "alignments"):
        if d.get(served_as_null) is None:
            d.pop(served_as_null, None)
    apply_overrides(r, d)
    return r


def save(path: Path, lib: Library) -> None:
    """Write the library's changes to ``path`` atomically."""
    deleted, added = lib.changes()
    doc = {"version": VERSION, "seed": lib.seed, "deleted": deleted, "added": [_record_json(r) for r in added]}
    fd, tmp = tempfile.mkstemp(prefix=".fakeapi-state.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, lib: Library) -> None:
    """Apply the changes saved in ``path`` (a missing file is an empty state)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"cannot read state file {path}: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise StateError(f"state file {path} is not a fake API state file (version {VERSION})")
    try:
        added = [_record_from_json(d) for d in doc.get("added", [])]
        lib.restore([str(i) for i in doc.get("deleted", [])], added)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"state file {path} is damaged: {exc.__class__.__name__}") from None


def attach(path: Path, lib: Library) -> None:
    """Load ``path`` into ``lib`` and save it again after every change."""
    load(path, lib)
    lock = threading.Lock()  # one writer at a time, so the newest state is the last renamed

    def on_change(changed: Library) -> None:
        with lock:
            save(path, changed)

    lib.on_change = on_change
