"""The historyfs exception tree: every error a layer raises to the one above it.

HTTP is translated into this tree once, in the client; the FUSE adapter translates it
once more into errno values; the CLI turns it into one line on stderr.

    HistoryFSError
     ├── ConfigError            bad input from the user: missing key, bad URL, bad path, bad filter
     ├── MalformedResponse      the API answered 2xx with something we cannot parse
     ├── CacheError             the on-disk cache cannot be used (locked, not private, disk full)
     └── ApiError               the API answered with an error, or could not be reached
          ├── AuthError          401/403: missing, wrong or under-scoped key
          ├── NotFound           404, or the API's ``invalid_id``: no such history item
          ├── BadRequest         400/422: the request itself is wrong (validation)
          └── Unavailable        5xx, connection errors, timeouts, exhausted retries
               ├── RateLimited   429 (carries ``retry_after`` seconds when the server said)
               ├── TruncatedBody the body ended before Content-Length bytes arrived
               └── OutcomeUnknown the request went out but no answer came back: it may have
                                  taken effect (never retried for DELETE, which must not repeat)

No message in this tree ever contains the API key: the client builds messages from the
status, the server's ``detail`` and the URL path, never from request headers.
"""

from __future__ import annotations


class HistoryFSError(Exception):
    """Base of every error historyfs raises on purpose."""


class ConfigError(HistoryFSError):
    """The user's input (flags, environment, files) cannot be used as given."""


class MalformedResponse(HistoryFSError):
    """A 2xx response whose body does not match the API's documented shape."""


class CacheError(HistoryFSError):
    """The disk cache cannot be used."""


class ApiError(HistoryFSError):
    """The API answered with an error status, or could not be reached.

    ``status`` is the HTTP status (None for transport failures), ``code`` the API's
    machine-readable ``detail.status``/``detail.code`` when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class AuthError(ApiError):
    """The API key is missing, wrong, or lacks a permission (401/403)."""


class NotFound(ApiError):
    """No history item with that id (404, or 400 ``invalid_id``)."""


class BadRequest(ApiError):
    """The request was refused as invalid (400/422)."""


class Unavailable(ApiError):
    """The API could not serve the request now: 5xx, network failure, timeout, retries spent."""


class RateLimited(Unavailable):
    """429 Too Many Requests; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class TruncatedBody(Unavailable):
    """The connection closed before the whole body (per Content-Length) arrived."""

    def __init__(self, message: str, *, expected: int | None, received: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.received = received


class OutcomeUnknown(Unavailable):
    """The request was sent but the connection failed before an answer: it may have taken effect."""


def fail(code: int, path: str = "") -> OSError:
    """A filesystem answer (ENOENT, EPERM, ...) as the OSError the FUSE adapter passes on as its errno."""
    import os

    return OSError(code, os.strerror(code), path)
