"""One compact stored history item and its JSON form (SpeechHistoryItemResponse).

Records hold only scalars and references to shared catalog objects (voice names, settings
presets), so 20,000 of them stay small. ``to_json`` builds the API's dict on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import audio

#: fields an add_item override may set directly on a record (others go to ``extra``)
RECORD_FIELDS = (
    "history_item_id", "date_unix", "request_id", "voice_id", "voice_name", "voice_category",
    "model_id", "text", "source", "state", "settings", "character_count_change_from",
    "character_count_change_to", "content_type", "output_format", "dialogue",
)


@dataclass(slots=True, eq=False)
class Record:
    """A history item as the fake stores it."""

    history_item_id: str
    seq: int  # insertion order; breaks ties between items of the same second
    date_unix: int
    request_id: str | None
    voice_id: str | None
    voice_name: str | None
    voice_category: str | None
    model_id: str | None
    text: str | None
    source: str | None
    settings: dict[str, Any] | None
    character_count_change_from: int
    character_count_change_to: int
    content_type: str
    output_format: str | None
    dialogue: tuple[tuple[str, str, str], ...] | None = None  # (text, voice_id, voice_name)
    state: str = "created"
    audio_frames: int = 100
    extra: dict[str, Any] | None = field(default=None)

    @property
    def sort_key(self) -> tuple[int, int]:
        """Ascending creation order: date, then insertion order."""
        return (self.date_unix, self.seq)

    @property
    def is_wav(self) -> bool:
        return self.content_type == "audio/wav"

    def searchable(self) -> str:
        """Text the ``search`` filter looks in: the text and every dialogue line."""
        lines = [t for t, _, _ in self.dialogue or ()]
        return "\n".join([self.text or "", *lines])

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "history_item_id": self.history_item_id,
            "request_id": self.request_id,
            "voice_id": self.voice_id,
            "model_id": self.model_id,
            "voice_name": self.voice_name,
            "voice_category": self.voice_category,
            "text": self.text,
            "date_unix": self.date_unix,
            "character_count_change_from": self.character_count_change_from,
            "character_count_change_to": self.character_count_change_to,
            "content_type": self.content_type,
            "state": self.state,
            "settings": dict(self.settings) if self.settings is not None else None,
            "feedback": None,
            "share_link_id": None,
            "source": self.source,
            "alignments": None,
            "dialogue": _dialogue_json(self.dialogue),
            "output_format": self.output_format,
        }
        if self.extra:
            d.update(self.extra)
        return d

    def plan(self) -> audio.AudioPlan:
        return audio.plan_for(self.history_item_id, self.audio_frames)

    def audio(self, fmt: str | None = None) -> tuple[str, int, Iterator[memoryview]]:
        """(content type, size, chunks) of the item's own audio, or of its WAV for ``fmt == "wav"``."""
        plan = self.plan()
        if fmt == "wav" or self.is_wav:
            return "audio/wav", plan.wav_size(), plan.iter_wav()
        return self.content_type, plan.mp3_size(), plan.iter_mp3()


def _dialogue_json(dialogue: tuple[tuple[str, str, str], ...] | None) -> list[dict[str, str]] | None:
    if dialogue is None:
        return None
    return [{"text": t, "voice_id": v, "voice_name": n} for t, v, n in dialogue]


def dialogue_from_json(value: Any) -> tuple[tuple[str, str, str], ...] | None:
    """The stored form of a JSON ``dialogue`` list (None stays None)."""
    if value is None:
        return None
    return tuple((str(x.get("text", "")), str(x.get("voice_id", "")), str(x.get("voice_name", ""))) for x in value)
