"""The wire: HTTP/1.1 keep-alive request parsing and response writing for the fake API.

Writes headers like the service where cheap (``server: uvicorn``, ``x-trace-id``,
``content-length``, ``access-control-allow-origin``), paces bodies to the bandwidth knob,
cuts a body short and closes the connection for truncation, and resets the connection
(RST, no answer) for an outage. Nothing is logged but method, path and status, at DEBUG.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .responses import Request, Response

log = logging.getLogger("historyfs.fakeapi")
MAX_BODY = 16 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """One connection; ``self.server.fake`` is the FakeApiServer answering."""

    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections close after this
    server: Any

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "uvicorn"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        log.debug("%s", format % args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_chunked(self) -> bytes:
        body = b""
        while (size := int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)) > 0:
            if len(body) + size > MAX_BODY:
                raise ValueError("request body too large")
            body += self.rfile.read(size)
            self.rfile.readline(10)  # CRLF after each chunk
        while self.rfile.readline(1000).strip():  # trailers up to the blank line
            pass
        return body

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY or length < 0:
            raise ValueError("bad request body length")
        return self.rfile.read(length) if length > 0 else b""

    def _request(self) -> Request:
        body = self._body()
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        return Request(self.command, unquote(parts.path), self.path, parse_qs(parts.query, keep_blank_values=True), headers, body)

    def _serve(self) -> None:
        try:
            req = self._request()
        except ValueError:  # unusable length or chunk framing: the connection cannot be reused
            self.close_connection = True
            self.send_error(400, "bad request body framing")
            return
        resp = self.server.fake.answer(req)
        entry = {"method": req.method, "path": req.target, "endpoint": "other", "status": "reset", "tenant": None}
        if resp is None:
            self._reset()
            self.server.fake.record(entry, None)
            return
        entry.update(endpoint=resp.endpoint, status=resp.status, tenant=getattr(resp.tenant, "name", None))
        try:
            sent, truncated = self._send(resp)
        finally:
            resp.close()
        self.server.fake.record(entry, resp.tenant, sent=sent, truncated=truncated)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def _send(self, resp: Response) -> tuple[int, bool]:
        length = resp.content_length
        cut = self.server.fake.faults.truncate_at(length) if 200 <= resp.status < 300 else None
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("x-trace-id", uuid.uuid4().hex)
        self.send_header("access-control-allow-origin", "*")
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            sent = self._write(resp.chunks(), length if cut is None else cut, self.server.fake.faults.bandwidth)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return 0, False
        if cut is not None:
            self.close_connection = True
        return sent, cut is not None

    def _write(self, chunks: Iterable[bytes | memoryview], limit: int, bandwidth: int) -> int:
        """Write at most ``limit`` body bytes, paced to ``bandwidth`` bytes/s when set."""
        sent, start = 0, time.monotonic()
        piece = max(1024, bandwidth // 20) if bandwidth else 1 << 30
        for chunk in chunks:
            view = memoryview(chunk)[: limit - sent]
            for i in range(0, len(view), piece):
                self.wfile.write(view[i : i + piece])
                sent += len(view[i : i + piece])
                if bandwidth:
                    time.sleep(max(0.0, start + sent / bandwidth - time.monotonic()))
            if sent >= limit:
                break
        return sent
