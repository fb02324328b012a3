"""exporters.watch and watch_state pieces that need no server: backoff, options, the state document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporters.watch import MAX_BACKOFF, WatchOptions, backoff
from exporters.watch_state import WatchState, default_path, masked, read_all
from historyfs.errors import ConfigError


def test_backoff_doubles_from_the_interval_up_to_a_minute() -> None:
    assert [backoff(1.0, n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF]
    assert backoff(300.0, 3) == 300.0  # never shorter than the interval itself


@pytest.mark.parametrize(("opts", "message"), [(WatchOptions(0), "bad --watch 0"), (WatchOptions(1, -1), "bad --full-resync -1")])
def test_bad_watch_options(opts: WatchOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        opts.check()


def test_passwords_in_destination_urls_are_masked() -> None:
    assert masked("sftp://me:secret@host/x") == "sftp://me:***@host/x"
    assert masked("s3://bucket/p") == "s3://bucket/p" and masked("/home/me/mirror") == "/home/me/mirror"


def test_a_password_never_reaches_the_state_file_name(tmp_path: Path) -> None:
    path = default_path("ftp://me:hunter2@nas/voices", tmp_path)
    assert "hunter2" not in str(path) and path != default_path("ftp://me:other@nas/voices", tmp_path)


def test_one_state_file_per_destination_and_what_a_pass_records(tmp_path: Path) -> None:
    a, b = default_path("s3://b/one", tmp_path), default_path("s3://b/two", tmp_path)
    assert a != b and a.parent == b.parent == tmp_path / "export-watch" and a.name.startswith("s3-b-one-")
    st = WatchState(a, "s3://b/one", 60, 3600, False)
    n = st.pass_started(full=False)
    st.pass_done(False, n, 2, [("item1", 1_790_000_000)], 0, (10, 1))
    st.failed("S3 upload failed: SlowDown", None)
    st.stopped()
    doc = json.loads(a.read_text())
    assert (doc["polls"], doc["uploaded"], doc["items_mirrored"], doc["items_pending"], doc["errors"], doc["state"]) == (1, 1, 10, 1, 1, "stopped")
    assert doc["recent_items"][0]["pass"] == "poll 1" and doc["recent_polls"][0]["new"] == 2
    assert [d["destination"] for d in read_all(tmp_path)] == ["s3://b/one"]
    assert oct(a.stat().st_mode & 0o777) == "0o600"


def test_an_unwritable_state_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write the watch state file"):
        WatchState(tmp_path / "file" / "state.json", "d", 1, 1, False).write()
