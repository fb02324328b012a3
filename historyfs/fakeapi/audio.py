"""Real, playable audio for every item, built lazily from the sample clips in assets/.

An item's MP3 is an ID3v2.4 tag naming the item (so every item's bytes differ) followed by
whole MP3 frames taken from a seeded sequence of clips (all mono, CBR 128 kbps, 44.1 kHz, no
Xing/LAME tag, so frames concatenate into a valid stream). Its WAV is a RIFF header followed by
the clips' PCM (s16le mono 22.05 kHz) for the very same frames: one MP3 frame = 576 samples.
Sizes are computed from the plan alone; bodies are streamed as memoryview slices of the shared
clips, so even a 50 MB item never exists as one bytes object (except through ``*_bytes``).
"""

from __future__ import annotations

import functools
import random
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

PCM_RATE = 22050
PCM_BYTES_PER_FRAME = 576 * 2
WAV_HEADER_SIZE = 44
CHUNK = 64 * 1024

_BITRATES_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_SAMPLE_RATES = (44100, 48000, 32000)


@dataclass(frozen=True, slots=True)
class Clip:
    """One sample clip: its MP3 frames (``offsets[k]`` = start of frame k) and aligned PCM."""

    mp3: bytes
    offsets: array  # len = frames + 1; offsets[-1] == len(mp3)
    pcm: bytes  # exactly frames * PCM_BYTES_PER_FRAME bytes

    @property
    def frames(self) -> int:
        return len(self.offsets) - 1


def frame_length(header: bytes) -> int:
    """Byte length of the MPEG-1 Layer III frame whose 4-byte header is given (0 if not one)."""
    if len(header) < 4 or header[0] != 0xFF or (header[1] & 0xFE) != 0xFA:
        return 0
    bitrate_idx, rate_idx, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if not 0 < bitrate_idx < 15 or rate_idx == 3:
        return 0
    return 144 * _BITRATES_KBPS[bitrate_idx] * 1000 // _SAMPLE_RATES[rate_idx] + padding


def split_frames(mp3: bytes) -> array:
    """Offsets of every frame of a bare MP3 stream, plus its end; ValueError on a bad stream."""
    offsets, pos = array("Q"), 0
    while pos < len(mp3):
        size = frame_length(mp3[pos : pos + 4])
        if size == 0 or pos + size > len(mp3):
            raise ValueError(f"not a whole MPEG-1 Layer III frame at byte {pos}")
        offsets.append(pos)
        pos += size
    offsets.append(pos)
    return offsets


def _load_clip(name: str) -> Clip:
    folder = resources.files("historyfs.fakeapi") / "assets"
    mp3 = (folder / f"{name}.mp3").read_bytes()
    offsets = split_frames(mp3)
    want = (len(offsets) - 1) * PCM_BYTES_PER_FRAME
    pcm = (folder / f"{name}.pcm").read_bytes()[:want]
    return Clip(mp3, offsets, pcm + bytes(want - len(pcm)))


@functools.cache
def clips() -> tuple[Clip, ...]:
    """The shipped clips, loaded once per process."""
    folder = resources.files("historyfs.fakeapi") / "assets"
    names = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".mp3"))
    if not names:
        raise RuntimeError("historyfs.fakeapi assets are missing: run scripts/make-fake-assets")
    return tuple(_load_clip(n) for n in names)


def mean_frame_bytes() -> float:
    """Average MP3 frame size of the clips (to turn a target size into a frame count)."""
    cs = clips()
    return sum(len(c.mp3) for c in cs) / sum(c.frames for c in cs)


def _syncsafe(n: int) -> bytes:
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def _id3_frame(frame_id: str, payload: bytes) -> bytes:
    return frame_id.encode("ascii") + _syncsafe(len(payload)) + b"\x00\x00" + payload


def id3_tag(item_id: str) -> bytes:
    """An ID3v2.4 tag with the item id as title and as a TXXX:history_item_id frame."""
    body = _id3_frame("TIT2", b"\x03" + f"History item {item_id}".encode())
    body += _id3_frame("TXXX", b"\x03history_item_id\x00" + item_id.encode())
    body += _id3_frame("TSSE", b"\x03historyfs fake API")
    return b"ID3\x04\x00\x00" + _syncsafe(len(body)) + body


def wav_header(data_size: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header for s16le mono PCM at PCM_RATE."""
    fmt = struct.pack("<HHIIHH", 1, 1, PCM_RATE, PCM_RATE * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size)


@dataclass(frozen=True, slots=True)
class AudioPlan:
    """Which frames of which clips make one item's audio."""

    tag: bytes
    segments: tuple[tuple[int, int], ...]  # (clip index, frames taken from its start)

    @property
    def frames(self) -> int:
        return sum(n for _, n in self.segments)

    def mp3_size(self) -> int:
        cs = clips()
        return len(self.tag) + sum(cs[c].offsets[n] for c, n in self.segments)

    def wav_size(self) -> int:
        return WAV_HEADER_SIZE + self.frames * PCM_BYTES_PER_FRAME

    def iter_mp3(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        cs = clips()
        yield memoryview(self.tag)
        for c, n in self.segments:
            yield from _slices(memoryview(cs[c].mp3)[: cs[c].offsets[n]], chunk)

    def iter_wav(self, chunk: int = CHUNK) -> Iterator[memoryview]:
        cs = clips()
        yield memoryview(wav_header(self.frames * PCM_BYTES_PER_FRAME))
        for c, n in self.segments:
            yield from _slices(memoryview(cs[c].pcm)[: n * PCM_BYTES_PER_FRAME], chunk)


def _slices(view: memoryview, chunk: int) -> Iterator[memoryview]:
    for start in range(0, len(view), chunk):
        yield view[start : start + chunk]


@functools.lru_cache(maxsize=512)
def plan_for(item_id: str, frames: int) -> AudioPlan:
    """The deterministic plan of an item: clips drawn by an RNG seeded with its id."""
    cs, rng = clips(), random.Random(f"audio:{item_id}")
    segments: list[tuple[int, int]] = []
    left = max(1, frames)
    while left > 0:
        c = rng.randrange(len(cs))
        take = min(cs[c].frames, left)
        segments.append((c, take))
        left -= take
    return AudioPlan(id3_tag(item_id), tuple(segments))
