"""`historyfs fake-api` / `python -m historyfs.fakeapi`: serve a fake library until SIGINT/SIGTERM.

Prints the base URL (``http://127.0.0.1:PORT``) as the first line of stdout, then the API key to
use: $ELEVENLABS_API_KEY when set, else a generated demo key (a fake key, safe to print).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence

from ..config import parse_size
from ..errors import ConfigError
from .faults import Faults
from .server import FakeApiServer
from .state import StateError


def faults_from_args(args: argparse.Namespace) -> Faults:
    try:
        return Faults(latency_ms=args.latency_ms, bandwidth=parse_size(args.bandwidth), rate_limit=args.rate_limit,
                      fail_rate=args.fail_rate, truncate_rate=args.truncate_rate, max_concurrent=args.max_concurrent,
                      plan=args.plan, chunked_audio=args.chunked_audio, head=args.head)
    except ValueError as exc:
        raise ConfigError(f"bad fault setting: {exc}") from None


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"bad --port {args.port}: expected 0..65535")
    if args.items < 0:
        raise ConfigError("--items must not be negative")
    if args.add_every < 0:
        raise ConfigError("--add-every must not be negative")
    if args.max_concurrent < 0:
        raise ConfigError("--max-concurrent must not be negative (0 = no limit)")
    if args.plan and args.max_concurrent:
        raise ConfigError("give --plan or --max-concurrent, not both")


def _server(args: argparse.Namespace, api_key: str) -> FakeApiServer:
    try:
        return FakeApiServer(items=args.items, seed=args.seed, api_key=api_key, faults=faults_from_args(args),
                             state_file=args.state, port=args.port, add_every=args.add_every)
    except StateError as exc:
        raise ConfigError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit 0."""
    _check(args)
    env_key = os.environ.get("ELEVENLABS_API_KEY", "").strip()
    api_key = env_key or "demo-" + secrets.token_hex(12)
    srv = _server(args, api_key)
    try:
        srv.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        print(srv.base_url, flush=True)
        print("using the key in $ELEVENLABS_API_KEY" if env_key else f"ELEVENLABS_API_KEY={api_key}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        srv.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m historyfs.fakeapi [options]`: the same as `historyfs fake-api [options]`."""
    from ..cli import main as cli_main

    return cli_main(["fake-api", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
