"""The wire: HTTP/1.1 keep-alive request parsing and response writing for the fake API.

Writes headers like the service where cheap (``server: uvicorn``, ``x-trace-id``,
``content-length``, ``access-control-allow-origin``), or real chunked framing (no
Content-Length) for responses marked ``chunked``; answers HEAD with headers only (the
Content-Length the body would have, as uvicorn does); paces bodies to the bandwidth knob,
cuts a body short and closes the connection for truncation (a chunked body then lacks its
last chunk), and resets the connection (RST, no answer) for an outage. Nothing is logged
but method, path and status, at DEBUG.
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

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

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
        entry.update(endpoint=resp.endpoint, status=resp.status, tenant=getattr(resp.tenant, "name", None),
                     limited=resp.limited)
        self.server.fake.record(entry, resp.tenant)
        sent, truncated = 0, False
        try:
            sent, truncated = self._send(resp, with_body=req.method != "HEAD")
        finally:
            resp.close()
            self.server.fake.record_body(resp.tenant, sent, truncated)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def _send(self, resp: Response, *, with_body: bool = True) -> tuple[int, bool]:
        length = resp.content_length
        cut = self.server.fake.faults.truncate_at(length) if with_body and 200 <= resp.status < 300 else None
        self._send_head(resp, length, close=cut is not None)
        if not with_body:
            return 0, False
        try:
            sent = self._write(resp.chunks(), length if cut is None else cut, self.server.fake.faults.bandwidth, resp.chunked)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return 0, False
        if cut is not None:
            self.close_connection = True
        return sent, cut is not None

    def _send_head(self, resp: Response, length: int, *, close: bool) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        if resp.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.send_header("x-trace-id", uuid.uuid4().hex)
        self.send_header("access-control-allow-origin", "*")
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()

    def _write(self, chunks: Iterable[bytes | memoryview], limit: int, bandwidth: int, chunked: bool) -> int:
        """Write at most ``limit`` body bytes, paced to ``bandwidth`` bytes/s when set.

        Chunked, each piece is one chunk; a body cut short stops inside a chunk (its size line
        announces the whole piece) and never gets the terminating zero-size chunk."""
        sent, start = 0, time.monotonic()
        step = max(1024, bandwidth // 20) if bandwidth else 1 << 30
        for chunk in chunks:
            view = memoryview(chunk)
            for i in range(0, len(view), step):
                piece = view[i : i + step]
                part = piece[: limit - sent]
                whole = len(part) == len(piece)
                self.wfile.write(b"%x\r\n%b%b" % (len(piece), part, b"\r\n" if whole else b"") if chunked else part)
                sent += len(part)
                if not whole:
                    return sent
                if bandwidth:
                    time.sleep(max(0.0, start + sent / bandwidth - time.monotonic()))
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        return sent
