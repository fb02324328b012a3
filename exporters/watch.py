"""`historyfs export DEST --watch [SECONDS]`: keep a destination mirrored as new clips appear.

A full reconcile first (a one-off export), then every ``interval`` seconds a poll with the mount's
refresh cursor (``historyfs.refresh.newer_items``: items dated at or after the newest known, one
request when nothing is new) that uploads the new items of the selection, and every
``full_resync`` seconds a full reconcile again: both sides listed anew, items deleted at the
source deleted from the mirror only with --delete and within the guards of a one-off run.

Nothing is lost to an outage: the cursor is the newest item *known*, and an item known but not
yet mirrored stays pending and is tried again at the next pass. After a failed pass (the API or
the destination unreachable, an item that failed) the next one waits longer: ``interval`` x 2,
4, 8... up to ``MAX_BACKOFF``. At start, bad input (a typo in --path, a missing bucket, a bad key)
ends the command with one line; an unreachable API is waited for. On ``stop`` (SIGTERM/SIGINT):
no new transfer starts, those in flight get transfer.STOP_GRACE seconds and are then cancelled
(leaving no partial object), an API call waits at most WATCH_API_DEADLINE, the manifest is
written, and the state file says "stopped".
Items that appear with a date older than the newest known (not seen with the real API) wait for
the next full reconcile, as in the mount.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from historyfs.config import parse_tz
from historyfs.errors import AuthError, ConfigError, HistoryFSError
from historyfs.layout import Layout
from historyfs.models import HistoryItem
from historyfs.refresh import newer_items

from .plan import Task, is_current
from .runner import ExportOptions, ExportSummary, Session, open_session, server_selected, tasks_for
from .watch_state import WatchState, default_path

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0  # seconds: the longest wait between two attempts after failures
#: An API call of a watch gives up (retries included) after at most this: the watch retries by
#: itself, and a SIGTERM never waits longer than this plus the stop grace for a call to end.
WATCH_API_DEADLINE = 10.0
Report = Callable[[str, ExportSummary], None]  # ("poll 12" / "full 3", what the pass did)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """--watch SECONDS, --full-resync SECONDS (0: never), --state-file FILE."""

    interval: float = 60.0
    full_resync: float = 3600.0
    state_file: Path | None = None

    def check(self) -> None:
        if not 0 < self.interval <= 86_400:
            raise ConfigError(f"bad --watch {self.interval:g}: expected seconds between polls, more than 0")
        if self.full_resync < 0:
            raise ConfigError(f"bad --full-resync {self.full_resync:g}: expected seconds, 0 for never")


def backoff(interval: float, failures: int) -> float:
    """Seconds to wait after ``failures`` failed passes in a row."""
    return min(interval * 2 ** max(0, failures - 1), max(interval, MAX_BACKOFF))


def watch(dest: str, opts: ExportOptions, wopts: WatchOptions, stop: threading.Event, report: Report, **api: str | None) -> None:
    """Mirror ``dest`` until ``stop`` is set; ``api``: api_key_file / api_url (as for export())."""
    wopts.check()
    if opts.dry_run:
        raise ConfigError("--watch cannot be combined with --dry-run")
    opts = replace(opts, api_deadline=min(opts.api_deadline, WATCH_API_DEADLINE))
    state = WatchState(wopts.state_file or default_path(dest), dest, wopts.interval, wopts.full_resync, opts.delete)
    state.write()
    failures = 0
    try:
        while not stop.is_set():
            try:
                with open_session(dest, opts, **api) as session:  # type: ignore[arg-type]
                    watcher = Watcher(session, opts, wopts, state, stop, report)
                    watcher.start()
                    watcher.loop()
                return
            except (ConfigError, AuthError):
                raise  # bad input: one line now, not retries forever (later passes only log such errors)
            except HistoryFSError as exc:  # e.g. the API unreachable at start: open everything again, later
                failures += 1
                delay = backoff(wopts.interval, failures)
                log.warning("watch: %s (trying again in %.0f s)", exc, delay)
                state.failed(str(exc), time.time() + delay)
                stop.wait(delay)
    finally:
        state.stopped()


class Watcher:
    """The passes of one session: a full reconcile, then polls and full reconciles until stopped."""

    def __init__(self, session: Session, opts: ExportOptions, wopts: WatchOptions, state: WatchState, stop: threading.Event, report: Report) -> None:
        self.session, self.opts, self.wopts, self.state = session, opts, wopts, state
        self.stop, self.report = stop, report
        self.known: dict[str, HistoryItem] = {}  # every item of the history seen, by id
        self.selected: set[str] = set()  # ids of the items the selection takes
        self.pending: set[str] = set()  # ids of selected items not mirrored yet
        self.allowed: set[str] | None = None  # with --search: ids the API selected
        self.failures = 0
        self.tz = parse_tz(opts.tz)
        self._began = 0.0  # monotonic time the current pass started

    def start(self) -> None:
        """The first full reconcile; its errors end the command (bad input) or reopen the session."""
        number = self._pass_started(full=True)
        self._after_full(number, self.session.reconcile(stop=self.stop))

    def loop(self) -> None:
        now = time.monotonic()
        next_poll = now + self.wopts.interval
        next_full = now + self.wopts.full_resync if self.wopts.full_resync else float("inf")
        while True:
            due = min(next_poll, next_full)
            self.state.waiting(time.time() + max(0.0, due - time.monotonic()), backing_off=self.failures > 0)
            if self.stop.wait(max(0.0, due - time.monotonic())):
                return
            began, full = time.monotonic(), time.monotonic() >= next_full
            ok = self._attempt(self._full if full else self._poll)
            if self.stop.is_set():
                return
            wait = self.wopts.interval if ok else backoff(self.wopts.interval, self.failures)
            next_poll = (began if ok else time.monotonic()) + wait
            if full:
                next_full = next_poll if not ok else began + self.wopts.full_resync

    def _attempt(self, step: Callable[[], bool]) -> bool:
        try:
            ok = step()
        except HistoryFSError as exc:
            self.failures += 1
            log.warning("watch: %s", exc)
            self.state.failed(str(exc), time.time() + backoff(self.wopts.interval, self.failures))
            return False
        self.failures = 0 if ok else self.failures + 1
        return ok

    # -- passes ---------------------------------------------------------------------------
    def _pass_started(self, *, full: bool) -> int:
        self._began = time.monotonic()
        return self.state.pass_started(full)

    def _full(self) -> bool:
        number = self._pass_started(full=True)
        return self._after_full(number, self.session.reconcile(stop=self.stop, relist=True))

    def _after_full(self, number: int, summary: ExportSummary) -> bool:
        s = self.session
        self.known = {i.history_item_id: i for i in s.items}
        self.selected = {t.item.history_item_id for t in s.tasks}
        self.allowed = set(self.selected) if s.criteria is not None and s.criteria.search else None
        self.pending = {t.item.history_item_id for t in s.tasks if not is_current(t, s.held)}
        return self._done(f"full {number}", True, number, 0, summary)

    def _poll(self) -> bool:
        number = self._pass_started(full=False)
        newest = max((i.date_unix for i in self.known.values()), default=0)
        new = [i for i in newer_items(self.session.api, newest) if i.history_item_id not in self.known]
        self.known.update((i.history_item_id, i) for i in new)
        if not new and not self.pending:
            return self._done(f"poll {number}", False, number, 0, ExportSummary())
        tasks = self._tasks([*new, *(self.known[i] for i in self.pending)], new)
        self.selected |= {t.item.history_item_id for t in tasks}
        summary = self.session.run(tasks, delete=False, stop=self.stop)
        self.pending = {t.item.history_item_id for t in tasks if not is_current(t, self.session.held)}
        return self._done(f"poll {number}", False, number, len(new), summary)

    def _tasks(self, candidates: list[HistoryItem], new: list[HistoryItem]) -> list[Task]:
        """Tasks of the selected ``candidates``, placed over every known item (collision suffixes as in the mount)."""
        assert self.session.criteria is not None
        everything = sorted(self.known.values(), key=lambda i: i.date_unix, reverse=True)
        crit = self.session.criteria.over(everything)
        placements = Layout(self.tz).place_all(everything)
        if self.allowed is not None and new:
            self.allowed |= server_selected(self.session.api, crit, since=min(i.date_unix for i in new)) or set()
        return tasks_for(candidates, placements, crit, self.opts.format, self.allowed)

    def _done(self, label: str, full: bool, number: int, new: int, summary: ExportSummary) -> bool:
        """Record and report a pass; False when something in it failed (the next pass backs off)."""
        self.session.exporter.flush()
        summary.seconds = time.monotonic() - self._began
        mirrored = [(t.item.history_item_id, t.item.date_unix) for t in self.session.uploaded] if summary.uploaded else []
        self.state.pass_done(full, number, new, mirrored, summary.deleted, (len(self.selected - self.pending), len(self.pending)))
        if summary.uploaded or summary.deleted or summary.failed or summary.refused or full:
            self.report(label, summary)
        problem = summary.refused or (summary.errors[0] if summary.errors else None)
        if problem:
            self.state.failed(f"{label}: {problem}", None)
        return not summary.failed
