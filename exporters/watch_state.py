"""The state file of a running `historyfs export --watch`: where it lives, what it says.

Location: ``<cache folder>/export-watch/<destination, made a file name>-<hash>.json``, where the
cache folder is $XDG_CACHE_HOME/historyfs or ~/.cache/historyfs (made 0700), or ``--state-file``.
The file is 0600 JSON, replaced atomically after every pass (``read_all`` lists them, for
`historyfs status`):

    version 1; destination (a password in the URL is masked); pid; state: "running",
    "backing-off" (after a failure, until ``next_attempt``) or "stopped"; phase: what it is doing
    ("full", "poll", "waiting", "starting", "stopped"); started, updated,
    last_poll, last_full_reconcile, next_attempt: ISO 8601 UTC or null; interval_s,
    full_resync_s, delete; polls and full_reconciles: passes started; items_mirrored (items of the
    selection whole at the destination) and items_pending (known, not yet mirrored: they are
    retried); uploaded (items) and deleted (objects) since start; errors (count), last_error
    {time, message}, recent_errors (last 10); recent_polls (last 20: n, at (unix time it
    started), new, uploaded); recent_items (last 50 mirrored: item_id, date_unix, pass
    ("poll N" / "full N"), mirrored).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from historyfs.config import default_cache_dir, ensure_private_dir
from historyfs.errors import ConfigError

log = logging.getLogger(__name__)
STATE_VERSION = 1
FOLDER = "export-watch"
_KEEP_ERRORS, _KEEP_POLLS, _KEEP_ITEMS = 10, 20, 50


def state_dir(cache_root: Path | None = None) -> Path:
    return (cache_root or default_cache_dir()) / FOLDER


def default_path(dest: str, cache_root: Path | None = None) -> Path:
    """One file per destination: a readable part (a password in the URL masked) and a hash of the whole destination."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", masked(dest)).strip("-")[:60] or "destination"
    return state_dir(cache_root) / f"{slug}-{hashlib.sha256(dest.encode()).hexdigest()[:10]}.json"


def read_all(cache_root: Path | None = None) -> list[dict[str, Any]]:
    """Every watch state file in the default folder (unreadable ones skipped)."""
    found = []
    for path in sorted(state_dir(cache_root).glob("*.json")):
        try:
            found.append({**json.loads(path.read_text()), "state_file": str(path)})
        except (OSError, ValueError):
            continue
    return found


def masked(dest: str) -> str:
    """``dest`` with any password of its URL replaced by ***."""
    parts = urlsplit(dest)
    if parts.password is None:
        return dest
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class WatchState:
    """The document, updated by the watch loop and written after each change."""

    def __init__(self, path: Path, dest: str, interval: float, full_resync: float, delete: bool) -> None:
        self.path = path
        self._written = False
        self._started = 0.0  # unix time the current pass started
        now = time.time()
        self.doc: dict[str, Any] = {
            "version": STATE_VERSION, "destination": masked(dest), "pid": os.getpid(), "state": "running", "phase": "starting",
            "started": iso(now), "updated": iso(now), "interval_s": interval, "full_resync_s": full_resync, "delete": delete,
            "last_poll": None, "last_full_reconcile": None, "next_attempt": None, "polls": 0, "full_reconciles": 0,
            "items_mirrored": 0, "items_pending": 0, "uploaded": 0, "deleted": 0,
            "errors": 0, "last_error": None, "recent_errors": [], "recent_polls": [], "recent_items": [],
        }

    def pass_started(self, full: bool) -> int:
        """Count a poll or full reconcile as started; its number."""
        key = "full_reconciles" if full else "polls"
        self.doc[key] += 1
        self.doc["phase"] = "full" if full else "poll"
        self._started = round(time.time(), 3)
        self.doc["last_full_reconcile" if full else "last_poll"] = iso(self._started)
        self.write()
        return int(self.doc[key])

    def pass_done(self, full: bool, number: int, new: int, mirrored: list[tuple[str, int]], deleted: int, counts: tuple[int, int]) -> None:
        """A pass ended: ``mirrored`` (item id, date) went up, ``counts`` = (items mirrored, pending)."""
        now = iso(time.time())
        label = f"{'full' if full else 'poll'} {number}"
        self.doc["uploaded"] += len(mirrored)
        self.doc["deleted"] += deleted
        self.doc["items_mirrored"], self.doc["items_pending"] = counts
        if not full:
            self._keep("recent_polls", {"n": number, "at": self._started, "new": new, "uploaded": len(mirrored)}, _KEEP_POLLS)
        for item_id, date_unix in mirrored:
            self._keep("recent_items", {"item_id": item_id, "date_unix": date_unix, "pass": label, "mirrored": now}, _KEEP_ITEMS)
        self.write()

    def failed(self, message: str, next_attempt: float | None) -> None:
        entry = {"time": iso(time.time()), "message": message}
        self.doc["errors"] += 1
        self.doc["last_error"] = entry
        self._keep("recent_errors", entry, _KEEP_ERRORS)
        self.waiting(next_attempt, backing_off=next_attempt is not None)

    def waiting(self, next_attempt: float | None, *, backing_off: bool = False) -> None:
        self.doc["next_attempt"] = iso(next_attempt)
        self.doc["state"] = "backing-off" if backing_off else "running"
        self.doc["phase"] = "waiting"
        self.write()

    def stopped(self) -> None:
        self.doc["state"], self.doc["phase"], self.doc["next_attempt"] = "stopped", "stopped", None
        self.write()

    def _keep(self, key: str, entry: dict[str, Any], limit: int) -> None:
        self.doc[key] = [*self.doc[key], entry][-limit:]

    def write(self) -> None:
        """Replace the file atomically (0600; a folder it has to create is made 0700). A failure after
        the first write is logged, not raised: the mirror matters more than its report."""
        self.doc["updated"] = iso(time.time())
        try:
            self._write()
        except (OSError, ConfigError) as exc:
            if not self._written:
                raise ConfigError(f"cannot write the watch state file {self.path}: {getattr(exc, 'strerror', None) or exc}") from None
            log.warning("cannot update %s: %s", self.path, exc)
        self._written = True

    def _write(self) -> None:
        if not self.path.parent.is_dir():
            ensure_private_dir(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.doc, f, indent=1)
        os.replace(tmp, self.path)
