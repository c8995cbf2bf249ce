"""Exceptions raised for the server's error responses.

Every error carries the server's message (the ``message`` of its
``{"error": {"code", "message"}}`` envelope), the HTTP status and the error code.
"""

from __future__ import annotations

from typing import Any


class WendelinError(Exception):
    """An error answered by the server (or a transport failure after retries)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.status} {self.code or ''}: {self.message}".replace("  ", " ")


class BadRequest(WendelinError):
    """400: malformed request, query or arguments (e.g. a catalog syntax error)."""


class Unauthorized(WendelinError):
    """401: no or bad credentials, an expired session or a revoked token."""


class Forbidden(WendelinError):
    """403: a permission or a workflow guard says no."""


class NotFound(WendelinError, KeyError):
    """404: missing, or not viewable by the caller (existence does not leak)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return WendelinError.__str__(self)


class MethodNotAllowed(WendelinError):
    """405: e.g. a data-changing method called with GET."""


class Conflict(WendelinError):
    """409: stale serial, duplicate id or reference, transition from the wrong state,
    an upload at the wrong offset."""


class TooLarge(WendelinError):
    """413: a body above the server's limit."""


class Invalid(WendelinError):
    """422: the body breaks the portal type's schema; also raised by the client for a
    request it refuses to make (e.g. ``getData`` of a stream above ``max_read_bytes``)."""


class Throttled(WendelinError):
    """429: too many failed logins."""


class Unavailable(WendelinError):
    """503 (still after the retries with back-off), or the server cannot be reached."""


class ServerFault(WendelinError):
    """500: a server fault (details only in the server's log)."""


_BY_STATUS: dict[int, type[WendelinError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: TooLarge,
    416: BadRequest,
    422: Invalid,
    429: Throttled,
    500: ServerFault,
    503: Unavailable,
}


def error_for(status: int, body: Any, fallback: str = "") -> WendelinError:
    """The exception for an error response: its status and decoded JSON body."""
    code: str | None = None
    message = fallback
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = str(err.get("message", fallback))
    cls = _BY_STATUS.get(status, WendelinError)
    return cls(message or f"HTTP {status}", status=status, code=code)
