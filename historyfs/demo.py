"""`historyfs demo`: the embedded fake API with a demo library, mounted with deletes allowed, in one process.

Owns only the demo's wiring: a FakeApiServer on 127.0.0.1 with its own demo key (never
ELEVENLABS_API_KEY), a throw-away cache folder, the mount (``mount.serve``) in the foreground,
and the "what to try" text. Interactive: waits until Ctrl-C, SIGTERM or `historyfs unmount`.
``--no-wait``: mounts, prints, checks that a listing works, unmounts, exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .core import Options
from .errors import ConfigError, HistoryFSError
from .launch import assemble, on_ready, open_log, say_on_stderr
from .mount import MountSettings, check_fuse, check_mountpoint, serve, signals_blocked

log = logging.getLogger(__name__)
DEFAULT_MOUNTPOINT = "historyfs-demo"


def _command() -> str:
    """How to call historyfs again: the running script's path when it is not on PATH (a venv)."""
    exe = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    on_path = shutil.which("historyfs")
    if exe and exe.name == "historyfs" and (on_path is None or Path(on_path).resolve() != exe):
        return shlex.quote(str(exe))
    return "historyfs"


def _instructions(mnt: Path, api_url: str, key: str) -> str:
    """What to try. Each program named here is installed by scripts/setup (a test checks it)."""
    q = shlex.quote(str(mnt))
    hfs = _command()
    return f"""historyfs demo: your demo history is mounted at {mnt}
  served by a local fake API at {api_url} (demo key: {key})

Try, in another terminal:
  ls {q}/by-voice {q}/by-date
  find {q}/by-date -name '*.mp3' | head
  ffprobe "$(find {q}/by-date -name '*.mp3' | head -1)"
  sox "$(find {q}/by-voice -name '*.mp3' | head -1)" -n stat
  ffplay -nodisp -autoexit "$(find {q}/by-voice -name '*.mp3' | head -1)"      (plays it, where there is sound)
  cat "$(find {q}/by-date -name '*.json' | head -1)"
  {hfs} status
  rm "$(find {q}/by-date -name '*.mp3' | head -1)"        (deletes that item in the fake API)
  HISTORYFS_API_URL={api_url} ELEVENLABS_API_KEY={key} {hfs} export ./demo-export --voice Rachel

Stop with Ctrl-C here, or: {hfs} unmount {q}
"""


def _say(text: str) -> None:
    """Print; a reader that went away (`historyfs demo | head`) must neither stop the demo nor keep it mounted."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's last flush must not fail either


def _prepare_mountpoint(arg: str | None) -> Path:
    mnt = Path(arg or DEFAULT_MOUNTPOINT).absolute()
    if not mnt.exists():
        try:
            mnt.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"cannot create mountpoint {mnt}: {exc.strerror}") from None
    check_mountpoint(mnt)
    return mnt


def _verify_then_unmount(mnt: Path, result: list[bool]) -> None:
    """--no-wait: a listing through the mount must work; then unmount (which ends serve())."""
    try:
        ok = bool(os.listdir(mnt / "by-date")) and bool(os.listdir(mnt / "by-voice"))
    except OSError as exc:
        _say(f"historyfs demo: listing the mount failed: {exc}")
        ok = False
    result.append(ok)
    subprocess.run(["fusermount", "-u", "-z", str(mnt)], capture_output=True)


def run_demo(args: argparse.Namespace) -> int:
    from .fakeapi import FakeApiServer

    check_fuse()
    mnt = _prepare_mountpoint(args.mountpoint)
    key = "demo-" + secrets.token_hex(12)
    cache_dir = Path(tempfile.mkdtemp(prefix="historyfs-demo-cache-"))
    with signals_blocked():  # the server's threads must leave Ctrl-C to the FUSE loop
        server = FakeApiServer(items=args.items, seed=args.seed, api_key=key).start()
    result: list[bool] = []
    try:
        settings = MountSettings(mountpoint=mnt, api_url=server.base_url, api_key=key, cache_dir=cache_dir,
                                 cache_max_size=1 << 30, tz_name="UTC", options=Options(allow_delete=True),
                                 foreground=True)

        mlog = open_log(settings, None)  # so `historyfs status` shows the demo like any mount
        rt, watch = assemble(settings, mlog, say_on_stderr)

        def announce(message: str) -> None:  # inside FUSE's init: must not raise, or nothing unmounts --no-wait
            if args.no_wait:
                threading.Thread(target=_verify_then_unmount, args=(mnt, result), daemon=True).start()
            _say(_instructions(mnt, server.base_url, key))

        serve(settings, on_ready(settings, rt, watch, mlog, announce), rt)
    finally:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # libfuse leaves SIGPIPE fatal: _say must see EPIPE
        server.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)
    if args.no_wait and result != [True]:
        raise HistoryFSError("the demo mount did not list its items")
    _say("historyfs demo: unmounted")
    return 0
