"""The fake's audio: real MP3 and WAV that ffprobe/sox decode, sizes known before the bytes."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from historyfs.fakeapi import Library, audio

LIB = Library(items=60, seed=7)
RECORDS = LIB.snapshot().order
MP3_ITEM = next(r for r in RECORDS if not r.is_wav)
WAV_ITEM = next(r for r in RECORDS if r.is_wav)

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_clips_are_whole_cbr_mono_frames_with_aligned_pcm() -> None:
    for clip in audio.clips():
        assert clip.offsets[-1] == len(clip.mp3) and clip.frames > 10
        assert len(clip.pcm) == clip.frames * audio.PCM_BYTES_PER_FRAME
        assert all(audio.frame_length(clip.mp3[o : o + 4]) in (417, 418) for o in clip.offsets[:-1])


def test_split_frames_rejects_a_broken_stream() -> None:
    clip = audio.clips()[0]
    with pytest.raises(ValueError):
        audio.split_frames(clip.mp3[:1000])
    with pytest.raises(ValueError):
        audio.split_frames(b"ID3" + clip.mp3)


def test_sizes_are_known_without_building_the_bytes() -> None:
    for r in RECORDS[:20]:
        ctype, size, chunks = r.audio()
        assert size == sum(len(c) for c in chunks) == len(LIB.audio_bytes(r.history_item_id))
        assert r.audio("wav")[1] == len(LIB.wav_bytes(r.history_item_id))


def test_chunks_are_bounded_views_not_one_big_bytes() -> None:
    big = max(RECORDS, key=lambda r: r.audio_frames)
    chunks = list(big.audio()[2])
    assert len(chunks) > 10 and max(len(c) for c in chunks) <= audio.CHUNK
    assert all(isinstance(c, memoryview) for c in chunks)


def test_every_item_starts_with_its_own_id3_tag() -> None:
    first = [LIB.audio_bytes(r.history_item_id)[:200] for r in RECORDS[:10] if not r.is_wav]
    assert len(set(first)) == len(first)
    data = LIB.audio_bytes(MP3_ITEM.history_item_id)
    assert data.startswith(b"ID3\x04") and MP3_ITEM.history_item_id.encode() in data[:200]


def test_same_item_same_bytes() -> None:
    other = Library(items=60, seed=7)
    assert other.audio_bytes(MP3_ITEM.history_item_id) == LIB.audio_bytes(MP3_ITEM.history_item_id)


def test_wav_items_serve_wav_as_their_own_audio() -> None:
    ctype, size, _ = WAV_ITEM.audio()
    data = LIB.audio_bytes(WAV_ITEM.history_item_id)
    assert ctype == "audio/wav" and data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert data == LIB.wav_bytes(WAV_ITEM.history_item_id)


def test_wav_header_describes_the_data() -> None:
    data = LIB.wav_bytes(MP3_ITEM.history_item_id)
    riff_size, = struct.unpack("<I", data[4:8])
    fmt, channels, rate, _, align, bits = struct.unpack("<HHIIHH", data[20:36])
    data_size, = struct.unpack("<I", data[40:44])
    assert (riff_size, data_size) == (len(data) - 8, len(data) - 44)
    assert (fmt, channels, rate, align, bits) == (1, 1, audio.PCM_RATE, 2, 16)


@needs_ffprobe
def test_ffprobe_decodes_the_mp3_with_a_sane_duration(tmp_path: Path) -> None:
    path = tmp_path / "item.mp3"
    path.write_bytes(LIB.audio_bytes(MP3_ITEM.history_item_id))
    info = _probe(path)
    stream = info["streams"][0]
    assert stream["codec_name"] == "mp3" and stream["sample_rate"] == "44100" and stream["channels"] == 1
    expected = MP3_ITEM.plan().frames * 1152 / 44100
    assert abs(float(info["format"]["duration"]) - expected) < 0.5
    subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"], check=True, timeout=60)


@needs_ffprobe
def test_ffprobe_reads_the_wav_with_the_same_duration(tmp_path: Path) -> None:
    path = tmp_path / "item.wav"
    path.write_bytes(LIB.wav_bytes(MP3_ITEM.history_item_id))
    info = _probe(path)
    assert info["format"]["format_name"] == "wav" and info["streams"][0]["codec_name"] == "pcm_s16le"
    assert abs(float(info["format"]["duration"]) - MP3_ITEM.plan().frames * 1152 / 44100) < 0.01


@needs_sox
def test_sox_reads_the_wav(tmp_path: Path) -> None:
    path = tmp_path / "item.wav"
    path.write_bytes(LIB.wav_bytes(WAV_ITEM.history_item_id))
    out = subprocess.run(["sox", "--i", "-r", str(path)], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == str(audio.PCM_RATE)
    stat = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, timeout=60)
    assert stat.returncode == 0 and "RMS" in stat.stderr
