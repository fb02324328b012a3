"""The libfuse 2 fallback (macOS with macFUSE, old distributions): it mounts and every reader gets exact bytes.

Debian holds libfuse 2 (the library only) beside libfuse 3, so the fallback runs for real here:
mfusepy's own FUSE_LIBRARY_PATH points the binding at libfuse.so.2, as on a machine without 3.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import mounted, needs_fuse

LIBFUSE2 = ctypes.util.find_library("fuse")
pytestmark = [needs_fuse, pytest.mark.fuse,
              pytest.mark.skipif(LIBFUSE2 is None, reason="libfuse 2 is not installed (Debian package libfuse2)")]


def test_libfuse2_mounts_and_serves_exact_bytes_to_stat_trusting_tools(
        fake_tenant: Callable[..., FakeTenant], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = fake_tenant(items=10, seed=51)
    monkeypatch.setenv("FUSE_LIBRARY_PATH", str(LIBFUSE2))
    (tmp_path / "mnt").mkdir()
    items = [HistoryItem.from_json(d) for d in t.library.items()]
    places = Layout(ZoneInfo("UTC")).place_all(items)
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--allow-delete") as m:
        stats = json.loads((m.path / ".historyfs" / "stats.json").read_text())
        assert stats["fuse_library"]["major"] == 2
        subprocess.run(["tar", "-cf", str(tmp_path / "out.tar"), "-C", str(m.path), "by-voice"], check=True)
        with tarfile.open(tmp_path / "out.tar") as tar:
            for item in items:
                member = tar.extractfile(places[item.history_item_id].relpath("by-voice"))
                assert member is not None and member.read() == t.library.audio_bytes(item.history_item_id)
        victim = items[0]
        paths = [m.path / places[victim.history_item_id].relpath(v) for v in ("by-voice", "by-date")]
        paths[0].unlink()
        assert not any(p.exists() for p in paths)  # attr_timeout=0: nothing stale to tell the kernel
        assert not os.access(m.path / places[items[1].history_item_id].relpath("by-date"), os.X_OK)
