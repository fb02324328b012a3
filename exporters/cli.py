"""`historyfs export` and `historyfs exporters`: turn parsed arguments into a run, print the outcome.

Arguments are defined in historyfs/cli.py; errors of the HistoryFSError tree propagate to its
main(), which prints them as one line. Output: the dry-run plan or nothing on stdout, then a
one-line summary (or ``--json``: one JSON object); progress bar on stderr when it is a TTY.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from historyfs.config import parse_size
from historyfs.errors import ConfigError

from .base import DestinationOptions
from .progress import ProgressBar, human_bytes, wants_bar
from .registry import available
from .runner import ExportOptions, ExportSummary, export
from .select import Selection

log = logging.getLogger(__name__)


def run_list(args: argparse.Namespace) -> int:
    """`historyfs exporters [--json]`: scheme, plugin target and origin of every installed exporter."""
    regs = available()
    if getattr(args, "json", False):
        print(json.dumps([{"scheme": r.scheme, "plugin": r.target, "origin": r.origin} for r in regs], indent=2))
        return 0
    width = max(len(r.scheme) for r in regs)
    for r in regs:
        print(f"{r.scheme:<{width}}  {r.target}  ({r.origin})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """`historyfs export DEST ...`; exit 1 when any item failed or a delete was refused."""
    opts = options_from_args(args)
    if args.watch is not None:
        return run_watch(args, opts)
    bar = ProgressBar(sys.stderr) if wants_bar(sys.stderr, args.quiet) and not args.dry_run else None
    try:
        summary = export(args.dest, api_key_file=args.api_key_file, api_url=args.api_url, progress=bar, options=opts)
    finally:
        if bar is not None:
            bar.finish()
    report(summary, as_json=args.json)
    return 1 if summary.failed or summary.refused else 0


def run_watch(args: argparse.Namespace, opts: ExportOptions) -> int:
    """`historyfs export DEST --watch [SECONDS]`: until SIGTERM or SIGINT, then exit 0 (see watch.py)."""
    from .watch import WatchOptions, watch

    stop = threading.Event()
    state_file = Path(args.state_file).expanduser() if args.state_file else None
    with _stop_on_signals(stop):
        watch(args.dest, opts, WatchOptions(args.watch, args.full_resync, state_file), stop, partial(report_pass, as_json=args.json),
              api_key_file=args.api_key_file, api_url=args.api_url)
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM or SIGINT asks the watch to stop cleanly; a second one interrupts it at once."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping (signal %d): finishing the transfers in flight", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def report_pass(label: str, summary: ExportSummary, *, as_json: bool) -> None:
    """One line per pass of a watch that did something (or a JSON object per line)."""
    if as_json:
        print(json.dumps({"pass": label, **summary.to_json()}), flush=True)
        return
    for line in summary.errors:
        print(f"historyfs export: failed: {line}", file=sys.stderr)
    print(f"watch {label}: " + summary_line(summary).removeprefix("export: "), flush=True)


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    """ExportOptions from the export command's arguments."""
    sel = Selection(tuple(args.voice), args.model, args.since, args.until, args.search, args.source, args.path)
    deadline = getattr(args, "api_deadline", None)
    extra: dict[str, Any] = {"api_deadline": deadline} if deadline is not None else {}
    extra["max_concurrency"] = getattr(args, "max_concurrency", None)
    extra["max_delete"] = args.max_delete
    return ExportOptions(sel, args.format, args.tz, args.delete, args.dry_run, args.jobs, args.cache_dir, destination_options(args), **extra)


def destination_options(args: argparse.Namespace) -> DestinationOptions:
    if args.sse_kms_key_id and args.sse != "aws:kms":
        raise ConfigError("--sse-kms-key-id needs --sse aws:kms")
    chunk = _multipart_size(getattr(args, "multipart_chunk_size", None))
    return DestinationOptions(
        endpoint_url=args.endpoint_url,
        profile=args.profile,
        region=args.region,
        storage_class=args.storage_class,
        sse=args.sse,
        sse_kms_key_id=args.sse_kms_key_id,
        checksum_mode=args.checksum_mode,
        **({"multipart_threshold": chunk, "multipart_chunksize": chunk} if chunk else {}),
    )


def _multipart_size(text: str | None) -> int | None:
    if text is None:
        return None
    size = parse_size(text)
    if size < 5 * 1024 * 1024:
        raise ConfigError(f"--multipart-chunk-size {text}: S3 parts are at least 5 MiB")
    return size


def report(summary: ExportSummary, *, as_json: bool) -> None:
    """Print the plan (dry run) and the summary on stdout; per-item errors and a refused delete on stderr."""
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        for line in summary.plan:
            print(line)
        for line in summary.errors:
            print(f"historyfs export: failed: {line}", file=sys.stderr)
    if summary.refused:
        print(f"historyfs export: error: {summary.refused}", file=sys.stderr)
    elif summary.not_deleted and not as_json:
        print(f"historyfs export: {summary.not_deleted} objects not deleted because {summary.failed} items failed", file=sys.stderr)
    if not summary.dry_run and not as_json:
        print(summary_line(summary))


def summary_line(s: ExportSummary) -> str:
    parts: list[Any] = [f"{s.selected} selected", f"{s.uploaded} uploaded", f"{s.skipped} up to date"]
    parts += [f"{s.deleted} deleted", f"{s.failed} failed", human_bytes(s.bytes), f"{s.seconds:.1f} s"]
    return "export: " + ", ".join(str(p) for p in parts)
