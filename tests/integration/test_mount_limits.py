"""Real mounts under the real API's per-plan concurrency limits: a bulk copy ends exact, without errors.

The fake API refuses requests above the plan's limit (429 too_many_concurrent_requests) and sends the
concurrency headers; the mount's budget learns the limit and a concurrency 429 never reaches a reader.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]


@pytest.mark.parametrize("plan,limit", [("free", 2), ("pro", 10)])
def test_cp_r_of_a_view_under_a_plans_limit_is_exact(plan: str, limit: int, fake_tenant: Callable[..., FakeTenant],
                                                      fake_faults: FakeApiServer, tmp_path: Path) -> None:
    fake_faults.set_faults(Faults(plan=plan, latency_ms=5))
    t = fake_tenant(items=40, seed=61)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        subprocess.run(["cp", "-r", str(m.path / "by-voice"), str(tmp_path / "copy")], check=True)
        stats = json.loads((m.path / ".historyfs" / "stats.json").read_text())
    items = [HistoryItem.from_json(d) for d in t.library.items()]
    places = Layout(ZoneInfo("UTC")).place_all(items)
    for item in items:
        copied = tmp_path / "copy" / places[item.history_item_id].relpath("by-voice").split("/", 1)[1]
        assert copied.read_bytes() == t.library.audio_bytes(item.history_item_id), copied
    concurrency = stats["api"]["concurrency"]
    assert concurrency["limit"] <= limit and concurrency["learned_from"] == "header"
    assert stats["downloads_failed"] == 0
    assert fake_faults.concurrency(t.library)["peak"] <= limit
