"""An export run, start to end; also the Python API: ``from exporters import export``.

    summary = export("s3://bucket/prefix", voices=("Rachel",), since="2026-11-01", jobs=16,
                     api_key=key, api_url="http://127.0.0.1:8000", progress=callback)

Order (everything that can be wrong with the input fails before the first transfer):
open the destination (bad URL / unknown scheme) -> check it (bucket, credentials, endpoint) ->
one listing of the destination, on a thread of its own started first, so that it overlaps the
import of the HTTP client and the API's listing; on the calling thread: list the history once in
full (layout placements must be computed over ALL items so collision suffixes match the mount's;
voice names resolve here) -> resolve the selection; a folder, model or source that names nothing
is an error (guards.py) -> with --search, one filtered listing (the only filter the API must
apply). Then plan -> either print the plan (dry run) or transfer, then delete (only if nothing
failed and the guards allow it), then write the manifest. When both sides fail, the
destination's error is the one reported (a bad bucket needs no API call to be seen).

A ``Session`` keeps the destination and the API client open, so `--watch` (watch.py) runs its
full reconciles and its polls through the same code as a one-off export.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from historyfs.config import load_api_key, parse_tz, resolve_api_url
from historyfs.errors import ConfigError, HistoryFSError
from historyfs.layout import Layout
from historyfs.models import HistoryItem

from .base import DestinationError, DestinationOptions
from .exporter import Exporter
from .manifest import Entry
from .guards import DEFAULT_MAX_DELETE, check_max_delete, check_names, delete_refusal
from .plan import Plan, Task, make_plan, make_task
from .progress import Progress, ProgressCallback
from .registry import open_destination
from .select import Criteria, Selection, resolve
from .transfer import Mover, Outcome, cache_peeker, run_all

if TYPE_CHECKING:  # the client (httpx) is imported when the API is first needed, after the destination started
    from historyfs.client import HistoryClient

log = logging.getLogger(__name__)

FORMATS = ("mp3", "wav")


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Everything a run can be told (the CLI flags of `historyfs export`, minus the destination)."""

    selection: Selection = field(default_factory=Selection)
    format: str = "mp3"
    tz: str | None = None
    delete: bool = False
    dry_run: bool = False
    jobs: int = 16  # >= the largest plan's 15 requests in flight: the account's budget, not this, is the limit
    cache_dir: str | None = None
    destination: DestinationOptions = field(default_factory=DestinationOptions)
    api_deadline: float = 60.0  # seconds an API call may take, retries included; then its item fails
    max_delete: int = DEFAULT_MAX_DELETE  # --delete removes at most this many objects (guards.py)
    max_concurrency: int | None = None  # cap on API requests in flight (None: learned from the API)


@dataclass(slots=True)
class ExportSummary:
    """What a run did (``plan`` lists the actions of a dry run)."""

    selected: int = 0
    uploaded: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: int = 0
    not_deleted: int = 0  # deletes skipped because items failed or a guard refused them
    refused: str | None = None  # why the deletes were refused (guards.delete_refusal)
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def export(
    dest: str,
    *,
    client: HistoryClient | None = None,
    api_key: str | None = None,
    api_key_file: str | None = None,
    api_url: str | None = None,
    progress: ProgressCallback | None = None,
    options: ExportOptions | None = None,
    **kwargs: Any,
) -> ExportSummary:
    """Mirror a selection of the history to ``dest``; keyword arguments are ExportOptions fields or Selection fields."""
    opts = build_options(options, kwargs)
    started = time.monotonic()
    with open_session(dest, opts, client=client, api_key=api_key, api_key_file=api_key_file, api_url=api_url) as session:
        summary = session.reconcile(progress)
    summary.seconds = time.monotonic() - started
    return summary


def build_options(options: ExportOptions | None, kwargs: dict[str, Any]) -> ExportOptions:
    """ExportOptions from ``options`` updated by keyword arguments (Selection fields allowed too)."""
    opts = options or ExportOptions()
    sel_fields = set(Selection.__dataclass_fields__)
    sel_kw = {k: v for k, v in kwargs.items() if k in sel_fields}
    opt_kw = {k: v for k, v in kwargs.items() if k not in sel_fields}
    if "voices" in sel_kw and isinstance(sel_kw["voices"], str):
        sel_kw["voices"] = (sel_kw["voices"],)
    try:
        sel = Selection(**{**asdict(opts.selection), **sel_kw})
        opts = ExportOptions(**{**{f: getattr(opts, f) for f in ExportOptions.__dataclass_fields__}, "selection": sel, **opt_kw})
    except TypeError as exc:
        raise ConfigError(f"bad export option: {exc}") from None
    _validate(opts)
    return opts


def _validate(opts: ExportOptions) -> None:
    if opts.format not in FORMATS:
        raise ConfigError(f"bad format {opts.format!r}: expected mp3 or wav")
    if not 1 <= opts.jobs <= 256:
        raise ConfigError(f"bad --jobs {opts.jobs}: expected 1..256")
    if not 0 < opts.api_deadline <= 86_400:
        raise ConfigError(f"bad --api-deadline {opts.api_deadline}: expected seconds, more than 0")
    check_max_delete(opts.max_delete)


Listed = tuple[Exporter, dict[str, Entry]]


class Session:
    """An open destination and API client, and what the destination holds (kept current as items go up)."""

    def __init__(self, destination: Future[Listed], api: HistoryClient, opts: ExportOptions) -> None:
        self.api, self.opts = api, opts
        self._destination = destination
        self._prepared = False
        self.items: list[HistoryItem] = []  # the last full listing of the history, newest first
        self.criteria: Criteria | None = None  # the selection as resolved by that listing
        self.tasks: list[Task] = []  # and the items it selects
        self.uploaded: list[Task] = []  # what the last run() uploaded

    @property
    def exporter(self) -> Exporter:
        return self._destination.result()[0]

    @property
    def held(self) -> dict[str, Entry]:
        return self._destination.result()[1]

    def reconcile(self, progress: ProgressCallback | None = None, stop: threading.Event | None = None, *, relist: bool = False) -> ExportSummary:
        """A full pass: list everything, upload what is missing, delete (with --delete, within the guards)."""
        tasks = self._select()
        if relist:
            self.held.clear()
            self.held.update(self.exporter.listing())
        return self.run(tasks, delete=self.opts.delete, progress=progress, stop=stop)

    def run(self, tasks: Iterable[Task], *, delete: bool, progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> ExportSummary:
        """Plan ``tasks`` against what is held, then print the plan (dry run) or transfer and delete."""
        tasks = list(tasks)
        plan = make_plan(tasks, self.held, delete=delete)
        if plan.uploads:
            plan = self._recover(tasks, plan, delete=delete)
        summary = ExportSummary(selected=plan.selected, skipped=plan.up_to_date, dry_run=self.opts.dry_run)
        summary.refused = delete_refusal(plan.selected, len(plan.deletes), self.opts.max_delete)
        if self.opts.dry_run:
            summary.plan = plan.lines()
            return summary
        if (plan.uploads or plan.deletes) and not self._prepared:
            self.exporter.prepare()  # "before the first change": a run that changes nothing skips it
            self._prepared = True
        self._transfer(plan, progress, stop, summary)
        self._delete(plan, summary)
        return summary

    def _recover(self, tasks: list[Task], plan: Plan, *, delete: bool) -> Plan:
        """Objects a killed run stored but did not record are held after all when the store recorded
        what they are (Exporter.recover): the plan is made again without them."""
        try:
            recovered = self.exporter.recover([k for t in plan.uploads for k in (t.audio_key, t.sidecar_key)])
        except DestinationError as exc:  # recovery only saves uploads: without it, they are made again
            log.warning("objects left by an interrupted run could not be described (%s): uploading them again", exc)
            return plan
        if not recovered:
            return plan
        log.info("%d objects stored by an interrupted run were recovered without uploading them again", len(recovered))
        self.held.update(recovered)
        return make_plan(tasks, self.held, delete=delete)

    def _select(self) -> list[Task]:
        """select_tasks; when it fails, a failure of the destination is reported instead (it is the one to fix first)."""
        try:
            self.items = list(self.api.iter_items())
            self.criteria, self.tasks = select_tasks(self.api, self.opts, self.items)
            return self.tasks
        except HistoryFSError:
            self._destination.result()
            raise

    def _transfer(self, plan: Plan, cb: ProgressCallback | None, stop: threading.Event | None, summary: ExportSummary) -> None:
        mover = Mover(self.exporter, self.api, Progress(len(plan.uploads), cb), threading.Event(), _cache_dir(self.opts.cache_dir))
        out: Outcome = run_all(plan.uploads, mover, self.opts.jobs, stop)
        self.held.update(out.entries)
        self.uploaded = out.done
        summary.uploaded, summary.bytes, summary.errors = out.uploaded, out.bytes, out.errors
        summary.failed = len(plan.uploads) - out.uploaded

    def _delete(self, plan: Plan, summary: ExportSummary) -> None:
        """Remove what is no longer selected, but only after a run without errors and within the guards."""
        if not plan.deletes:
            return
        if summary.failed or summary.refused:
            summary.not_deleted = len(plan.deletes)
            return
        self.exporter.delete(plan.deletes)
        for key in plan.deletes:
            self.held.pop(key, None)
        summary.deleted = len(plan.deletes)


@contextmanager
def open_session(dest: str, opts: ExportOptions, *, client: HistoryClient | None = None, api_key: str | None = None,
                 api_key_file: str | None = None, api_url: str | None = None) -> Iterator[Session]:
    """The destination opened and listed (on its own thread, started first) and the API client; both closed at the end."""
    with open_listed(dest, opts) as destination, _client(client, api_key, api_key_file, api_url, opts) as api:
        yield Session(destination, api, opts)


@contextmanager
def open_listed(dest: str, opts: ExportOptions) -> Iterator[Future[Listed]]:
    """The destination's exporter opened, checked (ConfigError before any transfer) and listed on
    a thread of its own, so that its start-up and listing overlap the API's; closed at the end."""
    dest_opts = replace(opts.destination, max_concurrency=max(opts.destination.max_concurrency, opts.jobs))
    opened: list[Exporter] = []

    def open_and_list() -> Listed:
        opened.append(open_destination(dest, dest_opts))
        opened[0].check()
        return opened[0], opened[0].listing()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="destination") as pool:
        future = pool.submit(open_and_list)
        try:
            yield future
        finally:
            wait([future])
            if opened:
                opened[0].close(persist=not opts.dry_run)  # a dry run writes nothing, not even the manifest


@contextmanager
def _client(client: HistoryClient | None, key: str | None, key_file: str | None, url: str | None, opts: ExportOptions) -> Iterator[HistoryClient]:
    if client is not None:
        yield client
        return
    from historyfs.client import HistoryClient, RetryPolicy

    api_key = key or load_api_key(key_file)
    assert api_key is not None
    retry = RetryPolicy(deadline=opts.api_deadline)
    with HistoryClient(api_key, resolve_api_url(url), retry=retry, max_connections=max(32, opts.jobs * 2),
                       max_concurrency=opts.max_concurrency) as owned:
        yield owned


def select_tasks(api: HistoryClient, opts: ExportOptions, items: list[HistoryItem]) -> tuple[Criteria, list[Task]]:
    """The selection resolved against the full listing ``items`` (newest first), and its items with their keys."""
    tz = parse_tz(opts.tz)
    placements = Layout(tz).place_all(items)
    crit = resolve(opts.selection, tz, items, placements)
    check_names(crit, items, placements)
    return crit, tasks_for(items, placements, crit, opts.format, server_selected(api, crit))


def tasks_for(items: Iterable[HistoryItem], placements: dict[str, Any], crit: Criteria, fmt: str, allowed: set[str] | None) -> list[Task]:
    """Tasks of the ``items`` the criteria select (``allowed``: ids the API selected by --search)."""
    chosen = (i for i in items if (allowed is None or i.history_item_id in allowed) and crit.matches(i, placements[i.history_item_id]))
    return [make_task(i, placements[i.history_item_id], crit.view, fmt) for i in chosen]


def server_selected(api: HistoryClient, crit: Criteria, since: int | None = None) -> set[str] | None:
    """Ids the API selects with ``--search`` (with the other filters it understands; items dated
    ``since`` or later only), or None without --search: every other filter is checked here exactly,
    on the full listing a run has anyway, so it costs no request."""
    if not crit.search:
        return None
    filters = crit.server_filters()
    if since is not None:
        filters["date_after_unix"] = max(since, filters.get("date_after_unix") or since)
    return {i.history_item_id for i in api.iter_items(**filters)}


def _cache_dir(text: str | None) -> Path | None:
    if text is None:
        return None
    if cache_peeker() is None:
        log.warning("--cache-dir ignored: this version's cache offers no read-only access; reading from the API")
        return None
    return Path(text).expanduser()
