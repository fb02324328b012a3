"""`historyfs status [MOUNTPOINT] [--json]`: this user's historyfs mounts and export watches, and how each is doing.

Owns: finding the mounts (type fuse.historyfs with this user's user_id in /proc/self/mounts),
reading each one's ``.historyfs/stats.json`` with a time limit (a dead or hung mount is shown
as such, never as a traceback), the `historyfs export --watch` state files (whether each watch
still runs), and printing the summary. Exit 1 when a mount does not answer.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError

FSTYPE = "fuse.historyfs"
MOUNTS = Path("/proc/self/mounts")
#: How long a mount may take to hand over its stats.json before it counts as not answering.
READ_TIMEOUT = 5.0
#: The stats.json fields `status` shows, in order.
FIELDS = ("api_url", "items", "cache_bytes", "cache_max_size", "downloads_in_flight", "pending_deletes",
          "last_refresh", "recent_errors", "log_file")


def _unescape(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def historyfs_mounts(uid: int | None = None, mounts: Path = MOUNTS) -> list[Path]:
    """The mount points of historyfs mounts made by ``uid`` (default: this user), in mount order."""
    uid = os.getuid() if uid is None else uid
    found = []
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == FSTYPE and f"user_id={uid}" in fields[3].split(","):
            found.append(Path(_unescape(fields[1])))
    return found


def read_stats(mountpoint: Path, timeout: float = READ_TIMEOUT) -> tuple[dict[str, Any] | None, str | None]:
    """(stats.json, None), or (None, why the mount did not answer)."""
    result: list[tuple[dict[str, Any] | None, str | None]] = []

    def read() -> None:
        try:
            result.append((json.loads((mountpoint / ".historyfs" / "stats.json").read_bytes()), None))
        except OSError as exc:
            result.append((None, exc.strerror or exc.__class__.__name__))
        except ValueError:
            result.append((None, "its stats.json is not JSON"))

    reader = threading.Thread(target=read, name="historyfs-status-read", daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else (None, f"no answer within {timeout:g} s")


def report(mountpoint: Path, timeout: float = READ_TIMEOUT) -> dict[str, Any]:
    """One mount's status: its mount point, whether it answers, and the fields of FIELDS."""
    stats, error = read_stats(mountpoint, timeout)
    entry: dict[str, Any] = {"mountpoint": str(mountpoint), "answering": stats is not None, "error": error}
    for name in FIELDS:
        entry[name] = stats.get(name) if stats else None
    return entry


# -- text -----------------------------------------------------------------------------------------
def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


def _ago(iso: str | None, now: float | None = None) -> str:
    if not iso:
        return "never"
    try:
        then = calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return iso
    seconds = max(0, int((now or time.time()) - then))
    ago = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
    return f"{iso} ({ago} ago)"


def _cache_line(used: int | None, limit: int | None) -> str:
    share = f" ({100 * used / limit:.0f}% used)" if used is not None and limit else ""
    return f"{_size(used)} of {_size(limit)}{share}"


def render(entry: dict[str, Any]) -> str:
    """A mount's status as a few aligned lines."""
    mnt = entry["mountpoint"]
    if not entry["answering"]:
        return f"{mnt}\n  not answering: {entry['error']} (to clear it: historyfs unmount --lazy {mnt})\n"
    errors = entry["recent_errors"] or []
    rows = [("API", entry["api_url"] or "?"), ("items", f"{entry['items']:,}" if entry["items"] is not None else "?"),
            ("cache", _cache_line(entry["cache_bytes"], entry["cache_max_size"])),
            ("downloads", f"{entry['downloads_in_flight'] or 0} in flight"),
            ("pending deletes", str(entry["pending_deletes"] or 0)), ("last refresh", _ago(entry["last_refresh"])),
            ("recent errors", f"{len(errors)}" if errors else "none"), ("log", entry["log_file"] or "?")]
    lines = [mnt, *(f"  {k:<16}{v}" for k, v in rows)]
    lines += [f"    {e.get('time', '')} {e.get('level', '')} {e.get('message', '')}" for e in errors[-5:]]
    return "\n".join(lines) + "\n"


def watches() -> list[dict[str, Any]]:
    """The `historyfs export --watch` runs this user has state files of, each with ``alive``."""
    from exporters.watch_state import read_all  # the exporters own the file; status only reads it

    found = read_all()
    for w in found:
        w["alive"] = w.get("state") != "stopped" and _pid_alive(w.get("pid"))
    return found


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def render_watch(w: dict[str, Any]) -> str:
    """An export watch's status as a few aligned lines."""
    state = w.get("state", "?") if w["alive"] else "not running" + (" (stopped)" if w.get("state") == "stopped" else "")
    rows = [("state", f"{state}, {w.get('phase') or ''}".rstrip(", ")), ("last poll", _ago(w.get("last_poll"))),
            ("full reconcile", _ago(w.get("last_full_reconcile"))),
            ("mirrored", f"{w.get('items_mirrored', 0):,} items, {w.get('items_pending', 0):,} pending"),
            ("errors", str(w.get("errors", 0)) + (f" (last: {w['last_error'].get('message')})" if w.get("last_error") else "")),
            ("state file", w.get("state_file", "?"))]
    return "\n".join([f"export --watch {w.get('destination', '?')}", *(f"  {k:<16}{v}" for k, v in rows)]) + "\n"


def run_status(args: argparse.Namespace) -> int:
    mounts = historyfs_mounts()
    if args.mountpoint:
        wanted = Path(os.path.realpath(args.mountpoint))
        if wanted not in mounts:
            raise ConfigError(f"not a historyfs mount of yours: {wanted} (see: historyfs status)")
        mounts = [wanted]
    entries = [report(m) for m in mounts]
    watching = [] if args.mountpoint else watches()
    if args.json:
        print(json.dumps({"mounts": entries, "watches": watching}, indent=2))
    elif not entries and not watching:
        print("no historyfs mounts")
    else:
        print("\n".join([*(render(e) for e in entries), *(render_watch(w) for w in watching)]), end="")
    return 0 if all(e["answering"] for e in entries) else 1
