"""Starting a mount from the command line: its log, its start-up messages, foreground or background.

Owns: `historyfs mount` (``run_mount``): the checks before mounting, the mount's private log
(``historyfs.logs``), ``ApiWatch`` (says at once that the API is not answering yet and that the
mount is retrying: it watches the client's own call counters, so the client needs no hook), the
fork with its readiness pipe (the parent relays the child's notices, then prints the one-line
success message or the child's error and exits with it), and the start-up API check.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import config, logs
from .errors import ConfigError, HistoryFSError
from .mount import (MountSettings, Runtime, api_errors_explained, check_fuse, check_mountpoint, make_client,
                    needs_api_check, sd_notify, serve, settings_from_args, signals_blocked)
from .retry import is_retryable_status

log = logging.getLogger(__name__)

#: How often the watcher looks at the client's counters while the start-up call runs.
POLL_SECONDS = 0.05


class HasCallStats(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


def failed_attempt(snapshot: dict[str, Any]) -> str | None:
    """Why an attempt failed in a way the client retries ("no answer", "HTTP 503"...), or None."""
    for outcomes in snapshot.get("calls", {}).values():
        for outcome, count in outcomes.items():
            if count and outcome == "error":
                return "no answer"
            if count and outcome.isdigit() and is_retryable_status(int(outcome)):
                return f"HTTP {outcome}"
    return None


def retry_notice(api_url: str, why: str, deadline: float) -> str:
    return f"cannot reach the API at {api_url} yet ({why}): retrying for up to {deadline:g} s (--api-deadline)"


class ApiWatch:
    """Calls ``notice(text)`` once, as soon as an API attempt fails, until ``stop()``."""

    def __init__(self, stats: HasCallStats, api_url: str, deadline: float, notice: Callable[[str], None]) -> None:
        self._stats, self._url, self._deadline, self._notice = stats, api_url, deadline, notice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="historyfs-api-watch", daemon=True)

    def start(self) -> ApiWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            why = failed_attempt(self._stats.snapshot())
            if why is not None:
                self._notice(retry_notice(self._url, why, self._deadline))
                return


def mounted_message(mountpoint: Path, items: int, log_file: Path) -> str:
    return f"historyfs: mounted {items:,} items at {mountpoint} (log: {log_file})"


# -- the start-up API check -------------------------------------------------------------------
def say_on_stderr(text: str) -> None:
    print(f"historyfs mount: {text}", file=sys.stderr, flush=True)


def check_api(settings: MountSettings, notice: Callable[[str], None] = say_on_stderr) -> None:
    """The key works and the API answers (one cheap list call); ``notice`` hears at once if it is retrying."""
    with make_client(settings) as client, api_errors_explained(settings.api_url):
        watch = ApiWatch(client.stats, settings.api_url, settings.api_deadline, notice).start()
        try:
            client.check_auth()
        finally:
            watch.stop()


# -- foreground or background -----------------------------------------------------------------
@dataclass(frozen=True)
class MountLog:
    """Where this mount logs, and its recent warnings and errors (for stats.json)."""

    path: Path
    recent: logs.RecentErrors
    quiet: bool  # the user did not ask for INFO on stderr (-v)


def open_log(s: MountSettings, log_file: str | None) -> MountLog:
    """The mount's private rotated log: --log-file, else historyfs.log in the cache folder."""
    path = Path(log_file).absolute() if log_file else logs.default_log_file(config.ensure_private_dir(s.cache_dir))
    level = logging.getLogger().level or logging.WARNING
    try:
        recent = logs.attach_mount_log(path, s.api_key, level)
    except OSError as exc:
        raise ConfigError(f"cannot open log file {path}: {exc.strerror}") from None
    return MountLog(path, recent, quiet=level > logging.INFO)


def assemble(s: MountSettings, mlog: MountLog, notice: Callable[[str], None]) -> tuple[Runtime, ApiWatch]:
    """The runtime (stats.json also names the API URL, the log and recent errors) and its start-up watch."""
    with signals_blocked():  # neither the runtime's threads nor the watch may take libfuse's signals
        rt = Runtime(s)
        rt.sources.update(logs.stats_sources(s.api_url, mlog.path, mlog.recent), cache_max_size=lambda: s.cache_max_size)
        return rt, ApiWatch(rt.client.stats, s.api_url, s.api_deadline, notice).start()


def on_ready(s: MountSettings, rt: Runtime, watch: ApiWatch, mlog: MountLog,
             announce: Callable[[str], None]) -> Callable[[], None]:
    """What to do once FUSE is live (inside its init: must not raise): stop watching, log and announce the success line."""

    def ready() -> None:
        watch.stop()
        message = mounted_message(s.mountpoint, len(rt.index), mlog.path)
        log.info("%s", message)
        announce(message)

    return ready


class _Pipe:
    """The child's end of the readiness pipe: "notice TEXT", then "ready MESSAGE" or "error TEXT"."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def say(self, kind: str, text: str, last: bool = False) -> None:
        if self._fd is None:
            return  # already said "ready": anything later is in the log
        try:
            os.write(self._fd, f"{kind} {' '.join(text.splitlines())}\n".encode())
        except OSError:
            pass  # the parent is gone (killed): the log has it all
        if last:
            os.close(self._fd)
            self._fd = None


def _daemonize(s: MountSettings, mlog: MountLog) -> int:
    """Fork; the child mounts and reports on a pipe; the parent relays that and exits with it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return _relay(pid, r)
    os.close(r)
    os._exit(_child(s, _Pipe(w), mlog))


def _relay(pid: int, r: int) -> int:
    """The parent: print each notice at once, then the success line (0) or the child's error."""
    kind = text = ""
    with os.fdopen(r, "rb") as pipe:
        for raw in pipe:
            kind, _, text = raw.decode(errors="replace").rstrip("\n").partition(" ")
            if kind == "notice":
                say_on_stderr(text)
            elif kind == "ready":
                print(text, flush=True)
                return 0
            else:
                break
    os.waitpid(pid, 0)
    raise HistoryFSError(text if kind == "error" and text else "the mount process died before the mount was ready")


def _child(s: MountSettings, pipe: _Pipe, mlog: MountLog) -> int:
    os.setsid()
    os.chdir("/")  # hold no folder busy (a daemon's habit; the mount point is absolute)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        rt, watch = assemble(s, mlog, lambda text: pipe.say("notice", text))
        try:
            serve(s, on_ready(s, rt, watch, mlog, lambda message: pipe.say("ready", message, last=True)), rt)
        finally:
            watch.stop()
        return 0
    except HistoryFSError as exc:
        log.error("mount failed: %s", exc)
        pipe.say("error", str(exc), last=True)
    except Exception as exc:
        log.exception("mount failed")
        pipe.say("error", f"internal error: {exc.__class__.__name__}: {exc}", last=True)
    return 1


def run_mount(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    check_fuse()
    check_mountpoint(s.mountpoint, s.fuse_options)
    mlog = open_log(s, args.log_file)
    if needs_api_check(s):
        check_api(s)
    if not s.foreground:
        return _daemonize(s, mlog)
    rt, watch = assemble(s, mlog, say_on_stderr)

    def announce(message: str) -> None:
        if mlog.quiet:  # else the log line reached stderr already
            print(message, file=sys.stderr, flush=True)
        sd_notify("READY=1")

    try:
        serve(s, on_ready(s, rt, watch, mlog, announce), rt)
    finally:
        watch.stop()
    return 0
