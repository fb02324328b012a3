"""The `historyfs` command: argument parsing and one-line errors; each command lives in its own module.

Every subcommand handler is ``run(args) -> int`` in the module named by ``_COMMANDS`` and is
imported only when that command runs, so `historyfs --help` stays fast and a missing optional
piece cannot break the others. Errors of the HistoryFSError tree become one line on stderr
and exit status 1 (2 for usage errors, as argparse does); nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import HistoryFSError
from .layout import RECENT_DEFAULT

log = logging.getLogger("historyfs")

# command -> "module:function" (imported lazily)
_COMMANDS = {
    "mount": "historyfs.launch:run_mount",
    "unmount": "historyfs.mount:run_unmount",
    "status": "historyfs.status:run_status",
    "demo": "historyfs.demo:run_demo",
    "fake-api": "historyfs.fakeapi.__main__:run",
    "export": "exporters.cli:run_export",
    "exporters": "exporters.cli:run_list",
}


class _Parser(argparse.ArgumentParser):
    """argparse that prints one line (not the whole usage) on a bad argument, and never
    guesses an abbreviated flag (``--api-key`` must not turn into ``--api-key-file``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _api_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("API")
    g.add_argument("--api-url", metavar="URL", help="API base URL (default $HISTORYFS_API_URL or the real service)")
    g.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="read the API key from FILE (default: $ELEVENLABS_API_KEY; never pass a key on the command line)",
    )


def _concurrency(text: str) -> int:
    """--max-concurrency: a whole number >= 1 (argparse turns the error into one line)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return int(text)


def _count(text: str) -> int:
    """A whole number >= 0 (argparse turns the error into one line)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, not {text!r}")
    return int(text)


def _concurrency_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-concurrency", metavar="N", type=_concurrency, help="never more than N API requests in flight (default: learned from the API; set it when other programs share the key)")


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("--debug", action="store_true", help="debug logging (same as -vv)")
    p.add_argument("--log-file", metavar="FILE", help="write the log to FILE instead of stderr")


def _watch_seconds(text: str) -> float:
    """--watch's optional SECONDS (a DEST written after --watch lands here: say where it goes)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS, not {text!r} (write DEST before --watch)") from None


EXPORT_EPILOG = """destinations: s3://bucket/prefix, file:///path or a folder, any scheme an installed plugin serves
(`historyfs exporters`), and with `pip install 'historyfs[fsspec]'` any filesystem fsspec knows (sftp://, ftp://,
gcs://, az://, webdav://...). Writing a destination plugin: docs/PLUGINS.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="historyfs",
        description="Mount your ElevenLabs speech-generation history as a filesystem, and mirror it.",
    )
    parser.add_argument("--version", action="version", version=f"historyfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # -- mount ---------------------------------------------------------------------------
    m = sub.add_parser("mount", help="mount your history at MOUNTPOINT", description="Mount the history at MOUNTPOINT.")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    _api_options(m)
    m.add_argument("--cache-dir", metavar="DIR", help="audio and index cache (default ~/.cache/historyfs; made 0700)")
    m.add_argument("--cache-max-size", metavar="SIZE", default="10G", help="evict least recently used audio above SIZE (default 10G)")
    m.add_argument("--read-only", action="store_true", help="refuse every change, deletes included")
    m.add_argument("--allow-delete", action="store_true", help="let `rm` of an item's audio delete the item through the API")
    m.add_argument("--tz", metavar="ZONE", help="time zone for folder and file names (default: local; IANA name or UTC)")
    m.add_argument("--refresh", metavar="SECONDS", type=float, default=60.0, help="poll for new items every SECONDS (default 60; 0 = never)")
    m.add_argument("--full-resync", metavar="SECONDS", type=float, default=3600.0, help="re-list everything every SECONDS to drop items deleted elsewhere (default 3600)")
    m.add_argument("--api-deadline", metavar="SECONDS", type=float, default=60.0, help="give up an API call (retries included) after SECONDS; reads of uncached audio then fail with EIO (default 60)")
    _concurrency_option(m)
    m.add_argument("--formats", metavar="LIST", default="native", help="audio formats to show: native (the item's own, usually mp3) and/or wav, comma-separated (default native)")
    m.add_argument("--allow-other", action="store_true", help="let other users see the mount (needs user_allow_other in /etc/fuse.conf)")
    m.add_argument("--uid", type=int, help="owner of every file (default: you)")
    m.add_argument("--gid", type=int, help="group of every file (default: yours)")
    m.add_argument("--umask", metavar="OCTAL", help="permission bits to clear, octal (default 022)")
    m.add_argument("--sizes", choices=("exact", "lazy"), default="exact", help="exact (default): a stat of a clip never opened learns its size first (a length probe, or the download); lazy: such clips show size 0 until opened (no download for `ls -l`, but tar, rclone and file managers then see empty files)")
    m.add_argument("--views", metavar="LIST", default="all", help="views to show, comma-separated: by-date, by-model, by-voice, recent, search (default all)")
    m.add_argument("--recent", metavar="N", type=_count, default=RECENT_DEFAULT, help=f"clips in recent/, newest first (default {RECENT_DEFAULT}; 0 turns recent/ off)")
    m.add_argument("--xattrs", action="store_true", help="expose user.historyfs.* extended attributes (voice, model, text...; makes `ls -l` about 2.5 times as slow; the .json sidecars always have it all)")
    m.add_argument("--foreground", "-f", action="store_true", help="stay in front until unmounted or interrupted")
    m.add_argument("-o", dest="fuse_options", action="append", default=[], metavar="OPT[,OPT...]", help="raw FUSE mount options")
    _log_options(m)

    u = sub.add_parser("unmount", help="unmount a historyfs mount", description="Unmount MOUNTPOINT.")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    u.add_argument("--lazy", "-z", action="store_true", help="detach now even if files are open")

    st = sub.add_parser("status", help="show your historyfs mounts and how each is doing",
                        description="Show each historyfs mount of yours: API, items, cache use, downloads, pending deletes, last refresh, recent errors and its log file. Exits 1 if a mount does not answer.")
    st.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT", help="only this mount")
    st.add_argument("--json", action="store_true", help="print JSON")

    # -- demo ----------------------------------------------------------------------------
    d = sub.add_parser("demo", help="mount a demo history served by the embedded fake API", description="Start the embedded fake API with a demo library and mount it.")
    d.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT", help="where to mount (default ./historyfs-demo)")
    d.add_argument("--items", type=int, default=300, help="how many demo clips (default 300)")
    d.add_argument("--seed", type=int, default=1, help="seed of the demo library (default 1)")
    d.add_argument("--no-wait", action="store_true", help="mount, print what to try, unmount and exit (for scripts)")
    _log_options(d)

    # -- fake-api ------------------------------------------------------------------------
    f = sub.add_parser("fake-api", help="run the fake ElevenLabs history server on 127.0.0.1", description="Run a faithful fake of the ElevenLabs History API on loopback.")
    f.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    f.add_argument("--items", type=int, default=500, help="items in the seeded library (default 500)")
    f.add_argument("--seed", type=int, default=1, help="seed of the library and of fault injection (default 1)")
    f.add_argument("--state", metavar="FILE", help="keep deletes and additions in FILE across restarts")
    f.add_argument("--add-every", metavar="SECONDS", type=float, default=0.0, help="add a new item every SECONDS (default 0: never)")
    f.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request in ms, with jitter")
    f.add_argument("--bandwidth", metavar="BYTES_PER_S", default="0", help="cap each response body to this rate (e.g. 2M; 0 = unlimited)")
    f.add_argument("--rate-limit", metavar="REQ_PER_S", type=float, default=0.0, help="answer 429 with Retry-After above this many requests/s (0 = off)")
    f.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests answered 500/503 (0..1)")
    f.add_argument("--truncate-rate", type=float, default=0.0, help="fraction of bodies cut short mid-way (0..1)")
    f.add_argument("--max-concurrent", metavar="N", type=int, default=0, help="requests in flight per API key; above it, after a 50 ms queue, 429 too_many_concurrent_requests (default 0: no limit)")
    f.add_argument("--plan", choices=("free", "starter", "creator", "pro", "scale", "business"), help="set --max-concurrent from the plan's limit (2, 3, 5, 10, 15, 15)")
    f.add_argument("--chunked-audio", action="store_true", help="send audio and download bodies chunked, without Content-Length")
    f.add_argument("--head", action="store_true", help="answer HEAD on /v1/history/ID/audio with the audio's headers (default: 405, as the real API)")
    _log_options(f)

    # -- export --------------------------------------------------------------------------
    e = sub.add_parser("export", help="mirror a selection of your history to S3, a folder or a plugin's destination",
                       description="Mirror a selection of the history to DEST (s3://bucket/prefix, file:///path or a folder).", epilog=EXPORT_EPILOG)
    e.add_argument("dest", metavar="DEST")
    _api_options(e)
    e.add_argument("--voice", action="append", default=[], metavar="NAME_OR_ID", help="only this voice (name or id; repeatable)")
    e.add_argument("--model", metavar="MODEL_ID", help="only this model")
    e.add_argument("--since", metavar="DATE", help="only items on or after DATE (YYYY-MM-DD or ISO time)")
    e.add_argument("--until", metavar="DATE", help="only items before the end of DATE (YYYY-MM-DD or ISO time)")
    e.add_argument("--search", metavar="TEXT", help="only items whose text matches TEXT")
    e.add_argument("--source", metavar="SOURCE", help="only items of this source (TTS, STS, ...)")
    e.add_argument("--path", metavar="FOLDER", help="only what the mount shows in this folder, e.g. by-voice/Rachel/2026-11, by-model/eleven_v3, recent or search/WORDS")
    e.add_argument("--format", choices=("mp3", "wav"), default="mp3", help="audio format (default mp3: the item's own audio)")
    e.add_argument("--tz", metavar="ZONE", help="time zone for folder and file names (default: local)")
    e.add_argument("--delete", action="store_true", help="remove what this exporter wrote for items no longer selected")
    e.add_argument("--max-delete", metavar="N", type=int, default=100, help="with --delete, refuse to delete more than N objects (default 100; an item is 2: audio and sidecar)")
    e.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    e.add_argument("--jobs", "-j", type=int, default=16, help="transfers at once (default 16: enough for the largest plan's 15 API requests in flight; the API budget queues what the account does not allow)")
    e.add_argument("--cache-dir", metavar="DIR", help="read audio from a mount's cache folder when present")
    e.add_argument("--api-deadline", metavar="SECONDS", type=float, default=60.0, help="give up an API call (retries included) after SECONDS; that item then fails and a re-run does it (default 60)")
    _concurrency_option(e)
    e.add_argument("--watch", nargs="?", const=60.0, type=_watch_seconds, metavar="SECONDS", help="keep running: mirror each new clip within SECONDS (default 60) of its creation (DEST goes before --watch)")
    e.add_argument("--full-resync", metavar="SECONDS", type=float, default=3600.0, help="with --watch, re-list both sides every SECONDS; deletions (--delete) happen then (default 3600; 0 = never)")
    e.add_argument("--state-file", metavar="FILE", help="with --watch, where to keep its state (default ~/.cache/historyfs/export-watch/)")
    e.add_argument("--json", action="store_true", help="print the summary as JSON")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s3 = e.add_argument_group("S3")
    s3.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint (default $AWS_ENDPOINT_URL or AWS)")
    s3.add_argument("--profile", help="AWS profile")
    s3.add_argument("--region", help="AWS region")
    s3.add_argument("--storage-class", help="e.g. STANDARD_IA, GLACIER_IR")
    s3.add_argument("--sse", choices=("AES256", "aws:kms"), help="server-side encryption")
    s3.add_argument("--sse-kms-key-id", metavar="KEY_ID")
    s3.add_argument("--checksum-mode", choices=("when_supported", "when_required"), help="boto3 request checksums (when_required for many S3-compatible stores)")
    s3.add_argument("--multipart-chunk-size", metavar="SIZE", help="multipart threshold and part size (default 8M; at least 5M)")
    e.add_argument("--dest-opt", action="append", default=[], metavar="KEY=VALUE", help="an option of the destination's plugin (repeatable; `historyfs exporters` lists the plugins)")
    _log_options(e)

    x = sub.add_parser("exporters", help="list installed exporter plugins", description="List installed exporter plugins.")
    x.add_argument("--json", action="store_true")
    return parser


def setup_logging(args: argparse.Namespace) -> None:
    verbose = getattr(args, "verbose", 0) or 0
    level = logging.DEBUG if getattr(args, "debug", False) or verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    handler: logging.Handler
    log_file = getattr(args, "log_file", None)
    if log_file and args.command != "mount":  # a mount opens its own rotated, private log (historyfs.logs)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; keep it at WARNING unless debugging.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == logging.DEBUG else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _refuse_key_in_argv(argv: Sequence[str]) -> None:
    """A key on the command line would show in `ps` and shell history: refuse it, without echoing it."""
    if any(a == "--api-key" or a.startswith("--api-key=") for a in argv):
        sys.stderr.write(
            "historyfs: error: the API key is never taken on the command line (it would show in `ps` and shell "
            "history): set ELEVENLABS_API_KEY or pass --api-key-file FILE\n"
        )
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _refuse_key_in_argv(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup_logging(args)
    except OSError as exc:
        print(f"historyfs: error: cannot open log file: {exc.strerror}", file=sys.stderr)
        return 1
    module_name, func_name = _COMMANDS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except HistoryFSError as exc:
        print(f"historyfs {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"historyfs {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # last resort: a bug, still one line (details in the log at debug)
        log.debug("unexpected error", exc_info=True)
        print(f"historyfs {args.command}: internal error: {exc.__class__.__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
