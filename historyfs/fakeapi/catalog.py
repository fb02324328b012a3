"""Static vocabulary of the fake library: voices, models, sources, settings presets and word pools.

Pure data, no randomness: generate.py draws from these with a seeded RNG. The voice list
deliberately holds names that are hard for filesystems (slash, unicode, "." and "..", control
characters, leading/trailing spaces, >255 bytes, two voices sharing one name).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Voice:
    """One voice as the History API names it."""

    voice_id: str
    name: str
    category: str  # premade | cloned | generated | professional
    weight: int  # how often it is drawn


LONG_VOICE_NAME = "Ünïcødé Längthy Narrator " * 12  # ~330 UTF-8 bytes, more than a file name may hold

VOICES: tuple[Voice, ...] = (
    Voice("21m00Tcm4TlvDq8ikWAM", "Rachel", "premade", 30),
    Voice("pNInz6obpgDQGcFmaJgB", "Adam", "premade", 20),
    Voice("ErXwobaYiN019PkySvjV", "Antoni", "premade", 10),
    Voice("EXAVITQu4vr4xnSDxMaL", "Bella", "premade", 10),
    Voice("Zo3UnIcOdEvOiCe00001", "Zoë Ünïcødé 声音", "cloned", 8),
    Voice("ACDCnarratorV0ice002", "AC/DC Narrator", "generated", 6),
    Voice("LongNameVoice0000003", LONG_VOICE_NAME.strip(), "professional", 3),
    Voice("DotVoice000000000004", ".", "cloned", 2),
    Voice("DotDotVoice000000005", "..", "cloned", 2),
    Voice("SpacedVoice000000006", "  Padded Voice  ", "generated", 3),
    Voice("CtrlCharVoice0000007", "Tab\tNew\nLine\x07Bell", "cloned", 2),
    Voice("NarratorCloned000008", "Narrator", "cloned", 5),
    Voice("NarratorPro000000009", "Narrator", "professional", 5),
    Voice("MyPodcastHost0000010", "My Podcast Host", "professional", 6),
)

#: model id -> weight (eleven_english_sts_v2 is only drawn for speech-to-speech items)
TTS_MODELS: tuple[tuple[str, int], ...] = (
    ("eleven_multilingual_v2", 50),
    ("eleven_turbo_v2_5", 20),
    ("eleven_flash_v2_5", 15),
    ("eleven_v3", 15),
)
STS_MODEL = "eleven_english_sts_v2"
DIALOGUE_MODEL = "eleven_v3"

#: source -> weight; every value of the spec's enum is accepted by the list filter
SOURCES: tuple[tuple[str, int], ...] = (
    ("TTS", 70),
    ("STS", 8),
    ("Projects", 6),
    ("Dubbing", 4),
    ("Flows", 4),
    ("PlayAPI", 3),
    ("ConvAI", 3),
)
ALL_SOURCES: tuple[str, ...] = (
    "TTS", "STS", "Projects", "PD", "AN", "Dubbing", "PlayAPI", "ConvAI",
    "VoiceGeneration", "InVPC", "Flows", "VoicePreview",
)

SETTINGS_PRESETS: tuple[dict[str, object], ...] = (
    {"stability": 0.5, "similarity_boost": 0.75, "style": 0.0, "use_speaker_boost": True},
    {"stability": 0.3, "similarity_boost": 0.8, "style": 0.2, "use_speaker_boost": True},
    {"stability": 0.71, "similarity_boost": 0.5, "style": 0.0, "use_speaker_boost": False},
    {"stability": 1.0, "similarity_boost": 1.0, "style": 0.45, "use_speaker_boost": True, "speed": 1.1},
)

MP3_FORMAT = "mp3_44100_128"  # what the shipped clips really are
WAV_FORMAT = "pcm_22050"

WORDS: tuple[str, ...] = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "welcome", "back", "to", "our",
    "show", "today", "we", "talk", "about", "audio", "files", "and", "history", "chapter", "one",
    "morning", "coffee", "remember", "please", "listen", "carefully", "story", "of", "a", "small",
    "town", "river", "bright", "cold", "day", "in", "april", "clocks", "were", "striking", "thirteen",
    "café", "naïve", "façade", "über", "straße", "año", "smörgåsbord", "déjà", "vu", "piñata",
    "こんにちは", "世界", "声音", "测试", "привет", "мир", "γειά", "σου", "مرحبا", "שלום", "🎧", "🚀",
)

SPECIAL_TEXTS: tuple[str, ...] = (
    "A",
    "?",
    "..",
    "Hello/World: a path-like text",
    "   leading spaces and trailing   ",
    "Line one\nLine two\n\nLine four",
    "Tabs\tand\tcontrol\x01characters",
    "Zoë says: «Ünïcødé» everywhere — 声音测试 🎧",
    "Quote \"double\" and 'single' and `back`",
    "../../etc/passwd",
)
