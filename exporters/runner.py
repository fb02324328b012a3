"""An export run, start to end; also the Python API: ``from exporters import export``.

    summary = export("s3://bucket/prefix", voices=("Rachel",), since="2026-11-01", jobs=8,
                     api_key=key, api_url="http://127.0.0.1:8000", progress=callback)

Order (everything that can be wrong with the input fails before the first transfer):
open the destination (bad URL / unknown scheme) -> check it (bucket, credentials, endpoint) ->
one listing of the destination; at the same time, on the calling thread: list the history once in
full (layout placements must be computed over ALL items so collision suffixes match the mount's;
voice names resolve here) -> resolve the selection -> one filtered listing when the API can filter
server-side. Then plan -> either print the plan (dry run) or transfer, then delete (only if
nothing failed), then write the manifest. When both sides fail, the destination's error is the
one reported (it is checked first in spirit: a bad bucket needs no API call to be seen).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from historyfs.client import HistoryClient, RetryPolicy
from historyfs.config import load_api_key, parse_tz, resolve_api_url
from historyfs.errors import ConfigError, HistoryFSError
from historyfs.layout import Layout

from .base import DestinationOptions, Entry, Exporter
from .guards import DEFAULT_MAX_DELETE, check_max_delete, check_names, delete_refusal
from .plan import Plan, Task, make_plan, make_task
from .progress import Progress, ProgressCallback
from .registry import open_destination
from .select import Criteria, Selection, resolve
from .transfer import Mover, cache_peeker, run_all

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
    jobs: int = 8
    cache_dir: str | None = None
    destination: DestinationOptions = field(default_factory=DestinationOptions)
    api_deadline: float = 60.0  # seconds an API call may take, retries included; then its item fails
    max_delete: int = DEFAULT_MAX_DELETE  # --delete removes at most this many objects (guards.py)


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
    with open_listed(dest, opts) as destination, _client(client, api_key, api_key_file, api_url, opts) as api:
        tasks = _select(api, opts, destination)
        exporter, held = destination.result()
        summary = _run(exporter, held, tasks, api, opts, progress)
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


@contextmanager
def open_listed(dest: str, opts: ExportOptions) -> Iterator[Future[Listed]]:
    """The destination's exporter opened, checked (ConfigError before any transfer) and listed on
    a thread of its own, so that its start-up and listing overlap the API's; closed at the end."""
    dest_opts = DestinationOptions(**{**asdict(opts.destination), "max_concurrency": max(opts.destination.max_concurrency, opts.jobs)})
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
    api_key = key or load_api_key(key_file)
    assert api_key is not None
    retry = RetryPolicy(deadline=opts.api_deadline)
    with HistoryClient(api_key, resolve_api_url(url), retry=retry, max_connections=max(32, opts.jobs * 2)) as owned:
        yield owned


def _select(api: HistoryClient, opts: ExportOptions, destination: Future[Listed]) -> list[Task]:
    """select_tasks; when it fails, a failure of the destination is reported instead (it is the one to fix first)."""
    try:
        return select_tasks(api, opts)
    except HistoryFSError:
        destination.result()
        raise


def _run(exporter: Exporter, held: dict[str, Entry], tasks: list[Task], api: HistoryClient, opts: ExportOptions, progress: ProgressCallback | None) -> ExportSummary:
    plan = make_plan(tasks, held, delete=opts.delete)
    summary = ExportSummary(selected=plan.selected, skipped=plan.up_to_date, dry_run=opts.dry_run)
    summary.refused = delete_refusal(plan.selected, len(plan.deletes), opts.max_delete)
    if opts.dry_run:
        summary.plan = plan.lines()
        return summary
    if plan.uploads or plan.deletes:
        exporter.prepare()  # "before the first change": a run that changes nothing skips it (a killed run's debris comes with unrecorded items, so with uploads)
    _transfer(exporter, api, plan, opts, progress, summary)
    _delete(exporter, plan, summary)
    return summary


def select_tasks(api: HistoryClient, opts: ExportOptions) -> list[Task]:
    """The selected items with their keys, placed over the full listing."""
    tz = parse_tz(opts.tz)
    items = list(api.iter_items())
    placements = Layout(tz).place_all(items)
    crit = resolve(opts.selection, tz, items, placements)
    check_names(crit, items, placements)
    allowed = _server_selected(api, crit)
    chosen = [i for i in items if (allowed is None or i.history_item_id in allowed) and crit.matches(i, placements[i.history_item_id])]
    return [make_task(i, placements[i.history_item_id], crit.view, opts.format) for i in chosen]


def _server_selected(api: HistoryClient, crit: Criteria) -> set[str] | None:
    """Ids the API selects with its own filters, or None when there is nothing to filter server-side."""
    filters = crit.server_filters()
    if not filters:
        return None
    return {i.history_item_id for i in api.iter_items(**filters)}


def _transfer(exporter: Exporter, api: HistoryClient, plan: Plan, opts: ExportOptions, cb: ProgressCallback | None, summary: ExportSummary) -> None:
    progress = Progress(len(plan.uploads), cb)
    mover = Mover(exporter, api, progress, threading.Event(), _cache_dir(opts.cache_dir))
    uploaded, nbytes, errors = run_all(plan.uploads, mover, opts.jobs)
    summary.uploaded, summary.bytes, summary.errors = uploaded, nbytes, errors
    summary.failed = len(plan.uploads) - uploaded


def _cache_dir(text: str | None) -> Path | None:
    if text is None:
        return None
    if cache_peeker() is None:
        log.warning("--cache-dir ignored: this version's cache offers no read-only access; reading from the API")
        return None
    return Path(text).expanduser()


def _delete(exporter: Exporter, plan: Plan, summary: ExportSummary) -> None:
    """Remove what is no longer selected, but only after a run without errors and within the guards."""
    if not plan.deletes:
        return
    if summary.failed or summary.refused:
        summary.not_deleted = len(plan.deletes)
        return
    exporter.delete(plan.deletes)
    summary.deleted = len(plan.deletes)
