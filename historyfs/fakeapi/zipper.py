"""The zip answered by POST /v1/history/download for two or more ids.

Members sit in one top-level folder ``ElevenLabs_<UTC now>/`` and are named like the service's
post-2023 downloads: ``ElevenLabs_<YYYY-MM-DD>T<HH_MM_SS>_<voice>_<cat>_<settings>_<model>.<ext>``
(UTC, underscores). Names are always safe: the voice part loses control characters, slashes
and leading/trailing dots and spaces, is cut to 60 characters, and a repeated name gets
``_2``, ``_3``... The extension follows the real bytes (.wav for WAV), unlike the service's
always-.mp3. The archive is STORED (audio does not compress) and is spooled to a temporary
file (in memory up to 8 MB), so a large selection never sits in memory.
"""

from __future__ import annotations

import re
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from typing import IO

from .records import Record
from .responses import Response

SPOOL_MAX = 8 * 1024 * 1024
CHUNK = 64 * 1024
_CATEGORY = {"premade": "pre", "cloned": "ivc", "professional": "pvc", "generated": "gen"}
_MODEL = {"eleven_multilingual_v2": "m2", "eleven_turbo_v2_5": "t2_5", "eleven_flash_v2_5": "f2_5",
          "eleven_v3": "v3", "eleven_english_sts_v2": "sts2", "eleven_monolingual_v1": "e1"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def _stamp(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H_%M_%S", time.gmtime(unix))


def safe_part(text: str | None, fallback: str, limit: int = 60) -> str:
    """One name part with nothing that could act as a path (no '/', '..', controls)."""
    cleaned = " ".join(_UNSAFE.sub("_", text or "").split())[:limit].strip(" ._")
    return cleaned or fallback


def _settings_part(r: Record) -> str:
    s = r.settings or {}
    pct = lambda k: round(float(s.get(k) or 0) * 100)  # noqa: E731
    return f"s{pct('stability')}_sb{pct('similarity_boost')}_se{pct('style')}_{'b' if s.get('use_speaker_boost') else 'n'}"


def member_stem(r: Record) -> str:
    """The file name (without extension) the service would give this item."""
    voice = safe_part(r.voice_name, "voice") if r.dialogue is None else "Dialogue"
    cat = _CATEGORY.get(r.voice_category or "", "dlg" if r.dialogue is not None else "unk")
    model = _MODEL.get(r.model_id or "", safe_part(r.model_id, "model", 30))
    return f"ElevenLabs_{_stamp(r.date_unix)}_{voice}_{cat}_{_settings_part(r)}_{model}"


def member_names(records: Sequence[Record], fmt: str | None, folder: str) -> list[str]:
    """Unique, safe member paths ``folder/name.ext`` for ``records`` in order."""
    names, seen = [], set()
    for r in records:
        stem, ext = member_stem(r), ".wav" if fmt == "wav" or r.is_wav else ".mp3"
        name, n = stem + ext, 1
        while name in seen:
            n += 1
            name = f"{stem}_{n}{ext}"
        seen.add(name)
        names.append(f"{folder}/{name}")
    return names


def _write(out: IO[bytes], records: Sequence[Record], fmt: str | None, folder: str) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for r, name in zip(records, member_names(records, fmt, folder)):
            info = zipfile.ZipInfo(name, date_time=time.gmtime(max(r.date_unix, 315532800))[:6])
            _, size, chunks = r.audio(fmt)
            with zf.open(info, "w", force_zip64=size >= 2**31) as member:
                for chunk in chunks:
                    member.write(chunk)


def _read(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def zip_response(records: Sequence[Record], fmt: str | None, now: float | None = None) -> Response:
    """A 200 application/zip response streaming the archive of ``records``."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)
    try:
        _write(spool, records, fmt, f"ElevenLabs_{_stamp(time.time() if now is None else now)}")
        length = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return Response(200, content_type="application/zip", stream=_read(spool), length=length, on_close=spool.close)
