"""Seeded, deterministic generation of a library's records (and of items added later).

``seeded_records(n, seed)`` always returns the same records for the same arguments, oldest
first, with dates spread over ~6 months before a fixed anchor (never "now"). It guarantees the
awkward cases exist: every catalog voice, every special text, a few dialogue items, a few WAV
items, some 1-5 MB items and (from 200 items on) a few 10-50 MB ones.
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

from . import audio, catalog
from .records import Record

ANCHOR_UNIX = 1_793_491_200  # 2026-11-01 00:00:00 UTC: the newest seeded item is just before
SPAN_SECONDS = 182 * 86400
SAME_SECOND_RATE = 0.06
_ALNUM = string.ascii_letters + string.digits


def new_id(rng: random.Random) -> str:
    """A 20-character alphanumeric id like the service's."""
    return "".join(rng.choices(_ALNUM, k=20))


def _text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.03:
        return rng.choice("ABCxyz?!") * rng.randint(1, 3)
    lo, hi = (3, 15) if r < 0.6 else (15, 80) if r < 0.9 else (80, 400) if r < 0.98 else (500, 1200)
    words = rng.choices(catalog.WORDS, k=rng.randint(lo, hi))
    if hi >= 80:  # paragraphs
        for i in range(40, len(words), rng.randint(30, 60)):
            words[i] += ".\n\n"
    return (" ".join(words)).capitalize() + rng.choice(".!?…")


def _frames_for(rng: random.Random, lo: float, hi: float) -> int:
    size = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return max(1, round(size / audio.mean_frame_bytes()))


def _dates(rng: random.Random, n: int) -> list[int]:
    dates = sorted(ANCHOR_UNIX - 1 - rng.randrange(SPAN_SECONDS) for _ in range(n))
    for i in range(1, n):
        if rng.random() < SAME_SECOND_RATE:
            dates[i] = dates[i - 1]
    return dates


def _special_positions(rng: random.Random, n: int) -> dict[str, set[int] | dict[int, int]]:
    """Which positions get forced voices/texts and which are dialogue, WAV, big or long."""
    pick = lambda k: set(rng.sample(range(n), min(n, k)))  # noqa: E731
    return {
        "voice": dict(zip(rng.sample(range(n), min(n, len(catalog.VOICES))), range(len(catalog.VOICES)))),
        "text": dict(zip(rng.sample(range(n), min(n, len(catalog.SPECIAL_TEXTS))), range(len(catalog.SPECIAL_TEXTS)))),
        "dialogue": pick(max(1, n // 40) if n >= 10 else 0),
        "wav": pick(max(1, n // 30) if n >= 10 else 0),
        "big": pick(n // 20),
        "long": pick(min(3, n // 100) if n >= 200 else 0),
    }


def _voice(rng: random.Random, forced: int | None) -> catalog.Voice:
    if forced is not None:
        return catalog.VOICES[forced]
    return rng.choices(catalog.VOICES, weights=[v.weight for v in catalog.VOICES])[0]


def _dialogue(rng: random.Random) -> tuple[tuple[str, str, str], ...]:
    voices = rng.sample(catalog.VOICES, 2)
    speakers = [voices[0], voices[1], voices[0]]
    return tuple((_text(rng), v.voice_id, v.name) for v in speakers)


def _fields(rng: random.Random, i: int, special: dict[str, Any]) -> dict[str, Any]:
    """The API fields of the i-th seeded item (everything but id, date and counters)."""
    source = rng.choices([s for s, _ in catalog.SOURCES], weights=[w for _, w in catalog.SOURCES])[0]
    model = catalog.STS_MODEL if source == "STS" else rng.choices(*zip(*catalog.TTS_MODELS))[0]
    text = catalog.SPECIAL_TEXTS[special["text"][i]] if i in special["text"] else _text(rng)
    voice = _voice(rng, special["voice"].get(i))
    fields: dict[str, Any] = dict(
        voice_id=voice.voice_id, voice_name=voice.name, voice_category=voice.category, model_id=model,
        text=text, source=source, settings=rng.choice(catalog.SETTINGS_PRESETS), dialogue=None,
        content_type="audio/mpeg", output_format=catalog.MP3_FORMAT,
    )
    if i in special["dialogue"] and i not in special["voice"]:
        fields.update(voice_id=None, voice_name=None, voice_category=None, text=None, source="TTS",
                      model_id=catalog.DIALOGUE_MODEL, dialogue=_dialogue(rng))
    if i in special["wav"]:
        fields.update(content_type="audio/wav", output_format=catalog.WAV_FORMAT)
    return fields


def _audio_frames(rng: random.Random, i: int, special: dict[str, Any]) -> int:
    if i in special["wav"]:
        return _frames_for(rng, 30e3, 200e3)
    if i in special["long"]:
        return _frames_for(rng, 10e6, 50e6)
    if i in special["big"]:
        return _frames_for(rng, 1e6, 5e6)
    return _frames_for(rng, 30e3, 600e3)


def cost_of(fields: dict[str, Any]) -> int:
    """Characters an item costs: its text, or all its dialogue lines."""
    dialogue = fields.get("dialogue") or ()
    return len(fields.get("text") or "") + sum(len(t) for t, _, _ in dialogue)


def seeded_records(n: int, seed: int) -> list[Record]:
    """The library of ``n`` items for ``seed``, oldest first (seq = position)."""
    rng = random.Random(seed)
    special = _special_positions(rng, n)
    counter, ids, out = rng.randint(0, 50_000), set(), []
    for i, date in enumerate(_dates(rng, n)):
        item_id = new_id(rng)
        while item_id in ids:
            item_id = new_id(rng)
        ids.add(item_id)
        fields = _fields(rng, i, special)
        cost = cost_of(fields)
        out.append(Record(history_item_id=item_id, seq=i, date_unix=date, request_id=new_id(rng),
                          character_count_change_from=counter, character_count_change_to=counter + cost,
                          audio_frames=_audio_frames(rng, i, special), **fields))
        counter += cost
    return out


def added_record(rng: random.Random, seq: int, date_unix: int, counter: int) -> Record:
    """A fresh TTS item (for add_item / --add-every) before any overrides."""
    voice = rng.choices(catalog.VOICES[:4])[0]
    text = _text(rng)
    return Record(
        history_item_id=new_id(rng), seq=seq, date_unix=date_unix, request_id=new_id(rng),
        voice_id=voice.voice_id, voice_name=voice.name, voice_category=voice.category,
        model_id=catalog.TTS_MODELS[0][0], text=text, source="TTS", settings=catalog.SETTINGS_PRESETS[0],
        character_count_change_from=counter, character_count_change_to=counter + len(text),
        content_type="audio/mpeg", output_format=catalog.MP3_FORMAT, audio_frames=_frames_for(rng, 30e3, 200e3),
    )
