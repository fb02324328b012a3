"""The mount itself and `historyfs unmount`: settings, checks, FUSE options, the runtime, serving.

Owns: turning CLI arguments into a ``MountSettings``; the checks that must fail before anything
is mounted (mountpoint, FUSE present, API errors explained); assembling the runtime (cache, index,
client, fetcher, journal, refresher, HistoryFS) in ``Runtime``; the FUSE options; ``serve``; and
unmounting. Starting from the command line (log, messages, daemon) is ``historyfs.launch``.
The binding (mfusepy) is imported only when mounting.
Threads start in FUSE ``init`` (after any fork). Signals: libfuse's own SIGINT/SIGTERM/SIGHUP
handlers end the loop and unmount; every thread we start inherits libfuse's blocked mask.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import config, libfuse
from .cache import BlobCache
from .client import HistoryClient
from .core import HistoryFS, Options
from .deletes import DeleteJournal
from .errors import AuthError, ConfigError, HistoryFSError, Unavailable
from .fetcher import Fetcher
from .index import Index, scope_of
from .layout import RECENT, RECENT_DEFAULT, SEARCH, VIEWS
from .refresh import Refresher
from .retry import RetryPolicy
from .search import Searches
from .stats import Counters, stats_document

log = logging.getLogger(__name__)

FSTYPE = "fuse.historyfs"
DEFAULT_UMASK = 0o022


@dataclass(frozen=True)
class MountSettings:
    """Everything a mount needs, validated."""

    mountpoint: Path
    api_url: str
    api_key: str = field(repr=False)
    cache_dir: Path
    cache_max_size: int
    tz_name: str | None = None
    refresh: float = 60.0
    full_resync: float = 3600.0
    api_deadline: float = 60.0
    max_concurrency: int | None = None  # cap on API requests in flight (None: learned from the API)
    recent: int = RECENT_DEFAULT  # --recent: items in recent/
    options: Options = field(default_factory=Options)
    allow_other: bool = False
    foreground: bool = False
    fuse_options: tuple[str, ...] = ()


def settings_from_args(args: argparse.Namespace) -> MountSettings:
    """Validate the `historyfs mount` arguments (ConfigError with one clear line otherwise)."""
    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    if not formats or formats - {"native", "wav", "mp3"}:
        raise ConfigError(f"bad --formats {args.formats!r}: use native, wav or native,wav")
    if args.refresh < 0 or args.full_resync < 0:
        raise ConfigError("--refresh and --full-resync must be >= 0 seconds")
    if not args.api_deadline > 0:
        raise ConfigError("--api-deadline must be > 0 seconds")
    recent = getattr(args, "recent", RECENT_DEFAULT)
    if recent < 0:
        raise ConfigError(f"bad --recent {recent}: the number of newest clips in recent/ (0 turns it off)")
    opts = Options(read_only=args.read_only, allow_delete=args.allow_delete and not args.read_only,
                   wav="wav" in formats, uid=os.getuid() if args.uid is None else args.uid,
                   gid=os.getgid() if args.gid is None else args.gid, umask=_umask(args.umask),
                   xattrs=args.xattrs, lazy_sizes=args.sizes == "lazy",
                   views=parse_views(getattr(args, "views", "all"), recent))
    config.parse_tz(args.tz)
    return MountSettings(
        mountpoint=Path(args.mountpoint).absolute(), api_url=config.resolve_api_url(args.api_url),
        api_key=config.load_api_key(args.api_key_file) or "",
        cache_dir=(Path(args.cache_dir) if args.cache_dir else config.default_cache_dir()).absolute(),
        cache_max_size=config.parse_size(args.cache_max_size), tz_name=args.tz, refresh=args.refresh,
        full_resync=args.full_resync, api_deadline=args.api_deadline, max_concurrency=getattr(args, "max_concurrency", None),
        recent=recent, options=opts, allow_other=args.allow_other, foreground=args.foreground,
        fuse_options=check_fuse_options((o for opt in args.fuse_options for o in opt.split(",") if o), fuse_major()),
    )


#: The -o options each libfuse major version accepts (library, kernel channel, mount(8) generic ones).
#: Checked here because libfuse only says "unknown option" on a stderr a daemonized mount has closed.
_COMMON_FLAGS = ("debug allow_other allow_root auto_unmount default_permissions blkdev ro rw suid nosuid dev nodev "
                 "exec noexec async sync dirsync atime noatime hard_remove use_ino readdir_ino intr noforget")
_COMMON_VALUED = ("umask uid gid entry_timeout negative_timeout attr_timeout ac_attr_timeout remember intr_signal "
                  "modules fsname subtype max_read blksize")
FUSE_FLAGS = {
    2: frozenset(f"{_COMMON_FLAGS} nopath big_writes splice_write no_splice_write splice_move no_splice_move "
                 "splice_read no_splice_read auto_inval_data no_auto_inval_data async_read sync_read atomic_o_trunc "
                 "no_remote_lock no_remote_flock no_remote_posix_lock nonempty large_read relatime norelatime "
                 "strictatime nostrictatime".split()),
    3: frozenset(f"{_COMMON_FLAGS} noauto_cache no_rofd_flush clone_fd nonempty".split()),
}
FUSE_VALUED = {
    2: frozenset(f"{_COMMON_VALUED} max_write max_readahead max_background congestion_threshold user".split()),
    3: frozenset(f"{_COMMON_VALUED} context fscontext defcontext rootcontext user max_idle_threads max_threads".split()),
}
#: Options that would undo per-open decisions the size contract depends on (SEMANTICS.md).
FUSE_REFUSED = {"direct_io": "historyfs chooses direct I/O per file", "kernel_cache": "historyfs chooses the page cache per file",
                "auto_cache": "historyfs chooses the page cache per file", "nothreads": "a download must not freeze the mount"}


def check_fuse_options(options: Iterable[str], major: int = 3) -> tuple[str, ...]:
    """The raw -o options, or ConfigError naming the first one libfuse ``major`` would refuse."""
    checked = []
    for opt in options:
        name, eq, _ = opt.partition("=")
        if name in FUSE_REFUSED:
            raise ConfigError(f"-o {name} is not allowed: {FUSE_REFUSED[name]}")
        if not (name in FUSE_FLAGS[major] and not eq or name in FUSE_VALUED[major] and eq):
            raise ConfigError(f"unknown FUSE option -o {opt!r} (see `man mount.fuse{'3' if major == 3 else ''}` "
                              f"for libfuse {major}'s options)")
        checked.append(opt)
    return tuple(checked)


def parse_views(text: str, recent: int = RECENT_DEFAULT) -> tuple[str, ...]:
    """--views: "all", or views separated by "," or "+" (mount.historyfs's -o splits on commas);
    recent/ is left out when --recent is 0."""
    names = [v.strip() for v in text.replace("+", ",").split(",") if v.strip()]
    unknown = [v for v in names if v not in (*VIEWS, "all")]
    if not names or unknown:
        raise ConfigError(f"bad --views {text!r}: use all, or some of {', '.join(VIEWS)} (comma-separated)")
    chosen = set(VIEWS) if "all" in names else set(names)
    views = tuple(v for v in VIEWS if v in chosen and (v != RECENT or recent > 0))
    if not views:
        raise ConfigError("--views recent with --recent 0 leaves nothing to show")
    return views


def _umask(text: str | None) -> int:
    if text is None:
        return DEFAULT_UMASK
    try:
        value = int(text, 8)
    except ValueError:
        raise ConfigError(f"bad --umask {text!r}: expected octal like 022") from None
    if not 0 <= value <= 0o777:
        raise ConfigError(f"bad --umask {text!r}: expected octal between 000 and 777")
    return value


def make_client(s: MountSettings) -> HistoryClient:
    """The API client: per-request timeout and total deadline bounded by --api-deadline."""
    return HistoryClient(s.api_key, s.api_url, timeout=min(30.0, s.api_deadline),
                         retry=RetryPolicy(deadline=s.api_deadline), max_concurrency=s.max_concurrency)


# -- checks before mounting -------------------------------------------------------------------
def fuse_major() -> int:
    """The libfuse major version the mount will use (the binding's choice), without loading it."""
    return libfuse.major(libfuse.library_path())


def check_fuse() -> None:
    """FUSE usable here: the device, the setuid helper and libfuse (3, or 2 as a fallback)."""
    helper = shutil.which("fusermount3") or shutil.which("fusermount")
    library = libfuse.library_path()
    missing = [what for what, ok in (("/dev/fuse", os.path.exists("/dev/fuse")), ("fusermount3", helper is not None),
                                     ("libfuse3.so.3", library is not None)) if not ok]
    if missing:
        raise ConfigError(f"FUSE is not available (no {', '.join(missing)}): install Debian/Ubuntu package 'fuse3'")


def check_mountpoint(path: Path, fuse_options: tuple[str, ...] = ()) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"mountpoint does not exist: {path} (create it with mkdir)") from None
    except OSError as exc:
        raise ConfigError(f"mountpoint {path} is unusable ({exc.strerror}); if it is a dead mount, run: fusermount -u {path}") from None
    if not path.is_dir():
        raise ConfigError(f"mountpoint is not a folder: {path}")
    if os.path.ismount(path) or _mounted_at(path):
        raise ConfigError(f"already mounted: {path} (run: historyfs unmount {path})")
    if "nonempty" not in fuse_options and any(os.scandir(path)):
        raise ConfigError(f"mountpoint is not empty: {path}")
    del st


def _mounted_at(path: Path) -> str | None:
    """The filesystem type mounted exactly at ``path`` (from /proc/self/mounts), or None."""
    target = os.path.realpath(path)
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        fields = line.split()
        if len(fields) >= 3 and fields[1].replace("\\040", " ") == target:
            return fields[2]
    return None


@contextlib.contextmanager
def api_errors_explained(api_url: str) -> Iterator[None]:
    """A refused key or an unreachable API, as the one-line errors a user can act on."""
    try:
        yield
    except AuthError as exc:
        raise ConfigError(f"the API refused the key ({exc})") from None
    except Unavailable as exc:
        raise ConfigError(f"cannot reach the API at {api_url} ({exc})") from None


def needs_api_check(s: MountSettings) -> bool:
    """A first mount (no index yet) lists everything before it goes live: that listing is the
    check, with the same errors, so the separate call is skipped (one round trip less at start)."""
    return (s.cache_dir / "index.sqlite3").exists()


# -- the runtime -------------------------------------------------------------------------------
class Runtime:
    """The assembled mount, without FUSE: what ``serve`` runs and tests can build directly."""

    def __init__(self, s: MountSettings) -> None:
        self.api_url = s.api_url
        config.ensure_private_dir(s.cache_dir)
        self.cache = BlobCache(s.cache_dir / "blobs", max_size=s.cache_max_size)
        try:
            self.index = Index(s.cache_dir / "index.sqlite3", config.parse_tz(s.tz_name), scope_of(s.api_url, s.api_key),
                               views=s.options.views, recent=s.recent)
            self.client = make_client(s)
        except BaseException:
            self.cache.close()
            raise
        self.counters = Counters()
        self.fetcher = Fetcher(self.cache, self.client, self.index, self.counters, deadline=s.api_deadline)
        self.deletes = DeleteJournal(self.index, self.client, self.cache, self.counters)
        self.refresher = Refresher(self.index, self.client, self.counters, s.refresh, s.full_resync, self.deletes.replay)
        self.searches = Searches(self.client, self.index, refresh=self.refresher.on_miss) if SEARCH in s.options.views else None
        self.fs = HistoryFS(self.index, self.fetcher, self.deletes, s.options, stats=self.stats_json,
                            on_miss=self.refresher.on_miss, searches=self.searches)
        self.fuse_calls = Counters()  # FUSE requests by operation (the adapter bumps them)
        self.sources: dict[str, Callable[[], object]] = {  # what stats.json reports beside the counters
            "items": lambda: len(self.index),
            "api": self.client.stats.snapshot,
            "cache": self.cache.stats,
            "cache_bytes": self.cache.total_bytes,
            "downloads_in_flight": self.fetcher.in_flight,
            "pending_deletes": lambda: len(self.deletes.pending()),
            "open_files": self.fs.open_handles,
            "fuse_calls": lambda: self.fuse_calls.snapshot()["counts"],
        }
        if self.searches is not None:
            self.sources["search"] = self.searches.stats

    def load(self) -> int:
        """The stored tree at once; a first mount lists everything before it goes live."""
        if self.index.load() == 0:
            with api_errors_explained(self.api_url):
                self.refresher.full()
        return len(self.index)

    def start(self) -> None:
        self.fetcher.start()
        self.refresher.start()
        if self.searches is not None:
            self.searches.start()

    def stats_json(self) -> bytes:
        return stats_document(self.counters, self.sources)

    def close(self) -> None:
        self.refresher.stop()
        if self.searches is not None:
            self.searches.stop()
        self.fetcher.stop()
        for closer in (self.client.close, self.index.close, self.cache.close):
            try:
                closer()
            except Exception:
                log.debug("error while closing", exc_info=True)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Threads started inside inherit a mask blocking SIGINT/SIGTERM/SIGHUP, so those signals reach
    the main thread, where libfuse's handlers end the FUSE loop (a helper thread would swallow them)."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: How long the kernel keeps attributes and entries (libfuse 3). Items never change; whatever does
#: change (a size learned after a lazy stat, an item deleted, added or moved) the mount tells the
#: kernel at once (``binding.Kernel``), so these only bound the kernel's memory of idle names.
KERNEL_CACHE_SECONDS = 300
#: Misses are kept shorter: a clip generated a moment ago must appear by name after a refresh.
NEGATIVE_SECONDS = 5
#: libfuse 3 worker threads: a stat or read waiting for a download must not hold up the others.
MAX_THREADS = 64


def fuse_kwargs(s: MountSettings, major: int = 3) -> dict[str, object]:
    """The FUSE mount options (see SEMANTICS.md and the fuse notes for each reason).

    libfuse 2 has one global attribute timeout and no way to tell the kernel that a path changed,
    so it runs with attr_timeout=0 (every stat asks the mount); libfuse 3 lets the kernel keep them.
    """
    cached = KERNEL_CACHE_SECONDS if major == 3 else 0
    opts: dict[str, object] = dict(
        raw_fi=True, foreground=True, nothreads=False, attr_timeout=cached, entry_timeout=cached or 30,
        negative_timeout=NEGATIVE_SECONDS, use_ino=True, hard_remove=True, auto_unmount=True, fsname="historyfs",
        subtype="historyfs", noatime=True, nodev=True, nosuid=True, default_permissions=True,
    )
    # max_idle_threads given: libfuse 3.14.0 complains on stderr about its own default (-1) otherwise
    opts.update({"max_threads": MAX_THREADS, "max_idle_threads": MAX_THREADS} if major == 3 else {"max_background": 64})
    if not s.options.allow_delete or s.options.read_only:
        opts["ro"] = True
    if s.allow_other:
        opts["allow_other"] = True
    for raw in s.fuse_options:
        name, eq, value = raw.partition("=")
        if not (name == "nonempty" and major == 3):  # libfuse 3 always allows it; check_mountpoint reads it
            opts[name] = value if eq else True
    return opts


#: Kernel read-ahead asked for on the mount, KiB: 1 MiB requests into the mount instead of 128 KiB.
READ_AHEAD_KB = 1024


def raise_read_ahead(mountpoint: Path, kb: int = READ_AHEAD_KB) -> bool:
    """Best effort: let the kernel read ahead ``kb`` KiB on the mount (sysfs; needs root). True if set.

    The kernel offers FUSE its default read-ahead (128 KiB) and a filesystem can only lower it;
    the mount's backing device in /sys/class/bdi can raise it, as rclone's docs advise. Never
    from FUSE init itself: the stat here waits until init has been answered (the kernel applies
    its own limit then), which is also what makes the value stick.
    """
    try:
        dev = os.stat(mountpoint).st_dev
        knob = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
        if int(knob.read_text()) >= kb:
            return False
        knob.write_text(str(kb))
        return True
    except (OSError, ValueError) as exc:
        log.debug("read-ahead of %s left as it is: %s", mountpoint, exc)
        return False


def _when_mounted(mountpoint: Path, on_ready: Callable[[], None]) -> None:
    """After FUSE init (on its own thread): raise the read-ahead, then say ready."""
    raise_read_ahead(mountpoint)
    on_ready()


def serve(s: MountSettings, on_ready: Callable[[], None], runtime: Runtime | None = None) -> None:
    """Mount and serve in this process until unmounted (FUSE in foreground mode)."""
    from .binding import FUSE, FUSE_MAJOR, LIBRARY
    from .fuse_ops import FuseOps, kept_thread_states

    with signals_blocked():  # the cache's scan thread, the client's pool...
        rt = runtime or Runtime(s)
    live = False
    try:
        rt.load()

        def init() -> None:
            nonlocal live
            rt.start()
            live = True
            threading.Thread(target=_when_mounted, args=(s.mountpoint, on_ready), name="historyfs-ready", daemon=True).start()

        rt.sources["fuse_thread_states"] = kept_thread_states
        rt.sources["fuse_library"] = lambda: {"path": LIBRARY, "major": FUSE_MAJOR}
        log.info("mounting with %s (libfuse %d)", LIBRARY, FUSE_MAJOR)
        FUSE(FuseOps(rt.fs, on_init=init, counters=rt.fuse_calls), str(s.mountpoint), **fuse_kwargs(s, FUSE_MAJOR))
    except RuntimeError:
        if not live:
            raise HistoryFSError(f"FUSE could not mount {s.mountpoint} (see the log; is it busy?)") from None
        log.info("unmounted %s (the loop ended on a signal)", s.mountpoint)  # libfuse 3 reports a signal as an error
    finally:
        rt.close()


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) we are ready, when run under it."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect("\0" + addr[1:] if addr.startswith("@") else addr)
        sock.sendall(message.encode())


def run_unmount(args: argparse.Namespace) -> int:
    path = Path(args.mountpoint).absolute()
    fstype = _mounted_at(path)
    if fstype is None:
        raise ConfigError(f"not mounted: {path}")
    if fstype != FSTYPE:
        raise ConfigError(f"not a historyfs mount: {path} (it is {fstype})")
    cmd = ["fusermount", "-u", *(["-z"] if args.lazy else []), str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["fusermount failed"])[-1]
        hint = "" if args.lazy else " (files open? try --lazy)"
        raise ConfigError(f"cannot unmount {path}: {reason}{hint}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: historyfs mount")
