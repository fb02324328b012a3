"""Where a mount's log goes and what it keeps: a private rotated file, the recent errors, no key.

Owns: the default log file of a mount (``historyfs.log`` in its cache folder, or ``--log-file``),
written 0600 and rotated by size; the ring buffer of the last WARNING/ERROR records that
stats.json and `historyfs status` show; and the filter that blanks the API key should any
record ever contain it. Nothing here knows FUSE or the API.
"""

from __future__ import annotations

import collections
import logging
import logging.handlers
import os
import threading
import time
from pathlib import Path
from typing import Any, TextIO

LOG_NAME = "historyfs.log"
#: Rotation: the live file plus this many old ones, each at most MAX_BYTES (16 MiB in all).
MAX_BYTES = 4 << 20
BACKUPS = 3
#: How many WARNING/ERROR records stats.json keeps (the newest last).
RECENT = 20
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_log_file(cache_dir: Path) -> Path:
    return cache_dir / LOG_NAME


class PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files (the live one and each new one after a rotation) are 0600."""

    def _open(self) -> TextIO:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # an older file may have been created wider
        return open(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)


class RecentErrors(logging.Handler):
    """The last ``capacity`` WARNING and ERROR records, as small dicts with their UTC time."""

    def __init__(self, capacity: int = RECENT) -> None:
        super().__init__(logging.WARNING)
        self._records: collections.deque[dict[str, str]] = collections.deque(maxlen=capacity)  # guarded by _guard
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        with self._guard:
            self._records.append(entry)

    def snapshot(self) -> list[dict[str, str]]:
        with self._guard:
            return list(self._records)


class KeyFilter(logging.Filter):
    """Blanks the API key in any record that would carry it (defence in depth: nothing logs it)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self._key = key

    def filter(self, record: logging.LogRecord) -> bool:
        if self._key and self._key in (text := record.getMessage()):
            record.msg, record.args = text.replace(self._key, "[API key]"), None
        return True


def attach_mount_log(log_file: Path, api_key: str, level: int) -> RecentErrors:
    """Add the mount's private rotated log file and the recent-errors buffer to the root logger.

    The file records at least INFO (a background mount has no other voice); ``level`` lowers
    it (--debug). OSError if the file cannot be opened. Returns the recent-errors buffer."""
    file_handler = PrivateRotatingFile(log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    file_handler.setLevel(min(level, logging.INFO))
    file_handler.setFormatter(logging.Formatter(FORMAT))
    recent = RecentErrors()
    root = logging.getLogger()
    for handler in (*root.handlers, file_handler, recent):
        handler.addFilter(KeyFilter(api_key))
    root.addHandler(file_handler)
    root.addHandler(recent)
    root.setLevel(min(root.level or logging.WARNING, file_handler.level))
    for handler in root.handlers:  # the file asks for INFO: keep the others as quiet as the user asked
        if handler is not file_handler and handler is not recent and handler.level == logging.NOTSET:
            handler.setLevel(level)
    return recent


def stats_sources(api_url: str, log_file: Path, recent: RecentErrors) -> dict[str, Any]:
    """What stats.json reports about where the mount talks to and where it writes (never the key)."""
    return {"api_url": lambda: api_url, "log_file": lambda: str(log_file), "recent_errors": recent.snapshot}
