"""The mount's log: private rotated files, the recent-errors ring, the key never written; delete is INFO."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from historyfs import logs
from historyfs.launch import failed_attempt, retry_notice
from historyfs.stats import Counters
from tests.unit.test_deletes import FakeApi


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        yield root
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved


def test_rotated_files_are_private_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "m.log").write_text("older, world-readable\n")
    (tmp_path / "m.log").chmod(0o644)
    handler = logs.PrivateRotatingFile(tmp_path / "m.log", maxBytes=2000, backupCount=2)
    log = logging.getLogger("test.rotate")
    log.addHandler(handler)
    try:
        for i in range(200):
            log.warning("line %03d %s", i, "x" * 40)
    finally:
        log.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["m.log", "m.log.1", "m.log.2"]
    assert all(stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600 for f in files)
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    assert "line 199" in (tmp_path / "m.log").read_text()


def test_attach_keeps_the_key_out_and_remembers_recent_warnings(tmp_path: Path, clean_root: logging.Logger) -> None:
    clean_root.setLevel(logging.WARNING)
    recent = logs.attach_mount_log(tmp_path / "h.log", "sk_secret123", logging.WARNING)
    log = logging.getLogger("historyfs.test")
    log.info("mounted")  # INFO reaches the file although the user asked for warnings only
    log.warning("refused %s", "sk_secret123")
    for i in range(logs.RECENT + 5):
        log.error("failure %d", i)
    text = (tmp_path / "h.log").read_text()
    assert "mounted" in text and "refused [API key]" in text and "sk_secret123" not in text
    kept = recent.snapshot()
    assert len(kept) == logs.RECENT and kept[-1]["message"] == f"failure {logs.RECENT + 4}"
    assert kept[-1]["level"] == "ERROR" and kept[-1]["time"].endswith("Z")
    assert all("sk_secret123" not in e["message"] for e in kept)


def test_failed_attempts_are_what_the_client_retries() -> None:
    assert failed_attempt({"calls": {"list": {"200": 2}}}) is None
    assert failed_attempt({"calls": {"list": {"401": 1}}}) is None  # refused, not retried: the error says it
    assert failed_attempt({"calls": {"list": {"error": 1}}}) == "no answer"
    assert failed_attempt({"calls": {"list": {"200": 1, "503": 1}}}) == "HTTP 503"
    assert "retrying for up to 60 s" in retry_notice("http://x", "no answer", 60.0)


def test_a_successful_delete_is_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from historyfs.deletes import DeleteJournal
    from historyfs.index import Index
    from tests.fixtures.mount import library_items
    from zoneinfo import ZoneInfo

    items = library_items(3)
    index = Index(tmp_path / "i.db", ZoneInfo("UTC"))
    index.replace_all(items)

    class NoCache:
        def discard(self, key: str) -> None:
            pass

    journal = DeleteJournal(index, FakeApi(items), NoCache(), Counters())  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="historyfs.deletes"):
        journal.delete(items[0].history_item_id)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("INFO", f"deleted history item {items[0].history_item_id}")]
    index.close()
