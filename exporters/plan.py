"""What a run must do, decided from the selection and ONE listing of the destination (pure).

An item is up to date when its audio key and its sidecar key are both held (in the exporter's
manifest, with the object present at the recorded size) for that same item id, the audio in the
wanted format and the sidecar at its current size. Items are immutable, so nothing else (no
timestamps, no HEAD per object) is needed. With ``delete``, every key the exporter holds that the
selection no longer wants is removed; keys it does not hold are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from historyfs.layout import Placement
from historyfs.models import HistoryItem

from .manifest import Entry

#: What a destination is told about an item beside its date (ObjectInfo.metadata): the mount's xattr names.
METADATA_FIELDS = {"voice": "voice_name", "voice_id": "voice_id", "model": "model_id", "text": "text", "source": "source"}


@dataclass(frozen=True, slots=True)
class Task:
    """One item to transfer: where its audio and sidecar go."""

    item: HistoryItem
    audio_key: str
    sidecar_key: str
    sidecar: bytes
    format: str  # what the audio key holds: "wav", or the native extension ("mp3")
    cache_key: str  # the mount's disk-cache key of the audio ("<id>.mp3" / "<id>.wav")
    transcode: bool  # wav wanted of a non-wav item: POST /v1/history/download output_format=wav


@dataclass(slots=True)
class Plan:
    """Uploads, the count already up to date, and deletes (keys)."""

    selected: int = 0
    uploads: list[Task] = field(default_factory=list)
    up_to_date: int = 0
    deletes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The dry-run report: one line per action, then a summary line."""
        out = [f"upload {t.audio_key}  (item {t.item.history_item_id})" for t in self.uploads]
        out += [f"delete {k}" for k in self.deletes]
        out.append(f"plan: {self.selected} selected, {len(self.uploads)} to upload, {self.up_to_date} up to date, {len(self.deletes)} to delete")
        return out


def make_task(item: HistoryItem, place: Placement, view: str, fmt: str) -> Task:
    """Keys (the mount's layout, relative to the destination) and sidecar of one item."""
    native = place.ext.lstrip(".") or "bin"
    transcode = fmt == "wav" and native != "wav"
    audio_key = place.relpath(view, "wav" if fmt == "wav" else "audio")
    label = "wav" if transcode else native
    cache = f"{item.history_item_id}.{label}"
    return Task(item, audio_key, place.relpath(view, "sidecar"), item.to_json_bytes(), label, cache, transcode)


def item_date(item: HistoryItem) -> datetime:
    return datetime.fromtimestamp(item.date_unix, timezone.utc)


def item_metadata(item: HistoryItem) -> dict[str, str]:
    """The item's main fields as text (ObjectInfo.metadata); empty ones are left out."""
    values = {name: getattr(item, attr, None) for name, attr in METADATA_FIELDS.items()}
    return {name: str(v) for name, v in values.items() if v not in (None, "")}


def is_current(task: Task, held: Mapping[str, Entry]) -> bool:
    """Both objects of ``task`` are held for this item (audio in this format, sidecar at this size)."""
    audio, side = held.get(task.audio_key), held.get(task.sidecar_key)
    item_id = task.item.history_item_id
    return (
        audio is not None
        and audio.item_id == item_id
        and audio.format == task.format
        and side is not None
        and side.item_id == item_id
        and side.size == len(task.sidecar)
    )


def make_plan(tasks: Iterable[Task], held: Mapping[str, Entry], *, delete: bool) -> Plan:
    """The plan for ``tasks`` (the selection) against what the destination ``held``."""
    plan = Plan()
    wanted: set[str] = set()
    for task in tasks:
        plan.selected += 1
        wanted.update((task.audio_key, task.sidecar_key))
        if is_current(task, held):
            plan.up_to_date += 1
        else:
            plan.uploads.append(task)
    if delete:
        plan.deletes = sorted(k for k in held if k not in wanted)
    return plan
