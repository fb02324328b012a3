"""`historyfs status` without a kernel: finding this user's mounts, reading them with a limit, the text."""

from __future__ import annotations

import json
from pathlib import Path

from historyfs import status


def test_only_this_users_historyfs_mounts_are_found_with_escapes_undone(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "historyfs /home/a/My\\040History fuse.historyfs ro,nosuid,user_id=1000,group_id=1000 0 0\n"
        "historyfs /home/b/History fuse.historyfs ro,user_id=1001,group_id=1001 0 0\n"
        "sshfs#x /home/a/ssh fuse.sshfs rw,user_id=1000,group_id=1000 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n")
    assert status.historyfs_mounts(1000, mounts) == [Path("/home/a/My History")]
    assert status.historyfs_mounts(0, mounts) == []


def test_a_folder_without_stats_is_reported_not_raised(tmp_path: Path) -> None:
    entry = status.report(tmp_path)
    assert entry["answering"] is False and entry["error"] == "No such file or directory"
    assert "not answering: No such file or directory" in status.render(entry)
    (tmp_path / ".historyfs").mkdir()
    (tmp_path / ".historyfs" / "stats.json").write_text("{not json")
    assert status.report(tmp_path)["error"] == "its stats.json is not JSON"


def test_a_mount_that_does_not_answer_in_time_is_shown_as_such(tmp_path: Path) -> None:
    fifo = tmp_path / ".historyfs" / "stats.json"
    fifo.parent.mkdir()
    import os

    os.mkfifo(fifo)  # opening it blocks, as a hung mount does
    try:
        entry = status.report(tmp_path, timeout=0.2)
    finally:
        with open(os.open(fifo, os.O_RDWR | os.O_NONBLOCK), "wb"):  # release the blocked reader
            pass
    assert entry["answering"] is False and entry["error"] == "no answer within 0.2 s"


def test_the_text_names_every_field(tmp_path: Path) -> None:
    doc = {"api_url": "https://api.example", "items": 12345, "cache_bytes": 3 << 29, "cache_max_size": 10 << 30,
           "downloads_in_flight": 2, "pending_deletes": 1, "last_refresh": "2026-11-30T10:00:00Z",
           "recent_errors": [{"time": "2026-11-30T10:01:00Z", "level": "WARNING", "message": "download of x failed"}],
           "log_file": "/c/historyfs.log"}
    (tmp_path / ".historyfs").mkdir()
    (tmp_path / ".historyfs" / "stats.json").write_text(json.dumps(doc))
    text = status.render(status.report(tmp_path))
    for expected in ("API             https://api.example", "items           12,345", "cache           1.5 GiB of 10.0 GiB (15% used)",
                     "downloads       2 in flight", "pending deletes 1", "last refresh    2026-11-30T10:00:00Z (",
                     "recent errors   1", "2026-11-30T10:01:00Z WARNING download of x failed", "log             /c/historyfs.log"):
        assert expected in text, expected


def test_export_watches_are_shown_with_whether_they_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporters.watch_state import WatchState, default_path
    from historyfs import status

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    running = WatchState(default_path("s3://b/p"), "s3://b/p", 30, 3600, False)
    running.pass_done(False, running.pass_started(False), 2, [("k1", 10), ("k2", 20)], 0, (2, 0))
    gone = WatchState(default_path("file:///tmp/x"), "file:///tmp/x", 30, 3600, False)
    gone.doc["pid"] = 2 ** 22 + 12345  # no such process
    gone.write()
    found = {w["destination"]: w for w in status.watches()}
    assert found["s3://b/p"]["alive"] and not found["file:///tmp/x"]["alive"]
    text = status.render_watch(found["s3://b/p"])
    assert "export --watch s3://b/p" in text and "last poll" in text and "state file" in text
    assert "not running" in status.render_watch(found["file:///tmp/x"])
