"""FakeApiServer: tenants, faults, stats and the threaded HTTP server on 127.0.0.1.

    with FakeApiServer(items=200, seed=1, api_key="test-key") as srv:
        srv.base_url, srv.library, srv.add_tenant(key, items=N, seed=S), srv.set_faults(Faults(...))

Threads: one daemon thread runs ``serve_forever``; each connection gets a daemon thread
(keep-alive); ``--add-every`` adds a daemon ticker. ``stop`` shuts the listener, drops open
connections and joins the threads it started, so nothing outlives it.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import app, state
from .concurrency import ConcurrencyGate
from .faults import FaultInjector, Faults
from .handler import Handler
from .library import Library
from .responses import Request, Response
from .stats import Stats

log = logging.getLogger("historyfs.fakeapi")
HOST = "127.0.0.1"


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on loopback that can drop its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a client opening 16 connections at once (the SDK's
    # thread pool, a mount's read-ahead) saw some of its SYNs dropped and retried after 1 s, a stall
    # the real service's front end does not cause.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, port: int, fake: FakeApiServer) -> None:
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__((HOST, port), Handler)

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error", exc_info=True)


class FakeApiServer:
    """A faithful fake of the ElevenLabs History API, one library per API key."""

    def __init__(self, items: int = 200, seed: int = 1, api_key: str = "test-key", faults: Faults | None = None,
                 state_file: str | Path | None = None, port: int = 0, add_every: float = 0.0) -> None:
        self.seed = seed
        self.api_key = api_key
        self.library = Library(items, seed, name="default")
        self._tenants: dict[str, Library] = {api_key: self.library}
        self._tenants_lock = threading.Lock()
        self.faults = FaultInjector(faults, seed)
        self.gate = ConcurrencyGate()  # requests in flight per tenant
        self._stats = Stats()
        if state_file is not None:
            state.attach(Path(state_file), self.library)
        self._port, self._add_every = port, add_every
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self._port, self)
        self._spawn(self._httpd.serve_forever, "fakeapi-serve", 0.1)
        if self._add_every > 0:
            self._spawn(self._add_loop, "fakeapi-add-every")
        return self

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _add_loop(self) -> None:
        while not self._stopping.wait(self._add_every):
            self.library.add_item()

    def stop(self) -> None:
        """Stop serving, drop open connections, join the threads started here."""
        httpd, self._httpd = self._httpd, None
        self._stopping.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.drop_connections()
            httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake API server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- tenants, faults, stats ------------------------------------------------------------
    def tenant(self, api_key: str) -> Library | None:
        with self._tenants_lock:
            return self._tenants.get(api_key)

    def add_tenant(self, api_key: str, items: int = 50, seed: int | None = None) -> Library:
        """An isolated library behind another key (ValueError if the key is taken)."""
        lib = Library(items, self.seed if seed is None else seed, name=f"tenant-{len(self._tenants) + 1}")
        with self._tenants_lock:
            if api_key in self._tenants:
                raise ValueError("a tenant already uses this key")
            self._tenants[api_key] = lib
        return lib

    def remove_tenant(self, api_key: str) -> None:
        """Forget a tenant added with add_tenant (the default one stays)."""
        with self._tenants_lock:
            if self._tenants.get(api_key) is not self.library:
                self._tenants.pop(api_key, None)

    def set_faults(self, faults: Faults) -> None:
        self.faults.set(faults)

    def get_faults(self) -> Faults:
        return self.faults.faults

    def stats(self) -> dict[str, Any]:
        """Requests by endpoint and status over every tenant (see stats.Stats.snapshot)."""
        return self._stats.snapshot()

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """The latest requests: method, path, endpoint, status, tenant name (never a key)."""
        return self._stats.entries()

    def reset_stats(self) -> None:
        self._stats.reset()
        with self._tenants_lock:
            libs = list(self._tenants.values())
        for lib in libs:
            lib.stats.reset()
            self.gate.reset_peak(lib)

    def concurrency(self, lib: Library) -> dict[str, int]:
        """One tenant's requests in flight now, the most ever at once, and the limit in force."""
        return {"in_flight": self.gate.in_flight(lib), "peak": self.gate.peak(lib),
                "limit": self.faults.faults.concurrency_limit}

    # -- called by the handler -------------------------------------------------------------
    def answer(self, req: Request) -> Response | None:
        return app.handle(self, req)

    def record(self, entry: dict[str, Any], tenant: Library | None) -> None:
        """Count a request as it is answered (before its body goes out)."""
        for stats in (self._stats, *((tenant.stats,) if tenant is not None else ())):
            stats.record(entry)

    def record_body(self, tenant: Library | None, sent: int, truncated: bool) -> None:
        """Count what went out of its body."""
        for stats in (self._stats, *((tenant.stats,) if tenant is not None else ())):
            stats.record_body(sent, truncated)
