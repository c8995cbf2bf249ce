"""The HTTP connection: credentials, error mapping, retries with back-off."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import requests

from .errors import Unavailable, WendelinError, error_for

#: Statuses retried with back-off (the server sends ``Retry-After`` with them).
RETRY_STATUSES = frozenset({503})
#: Methods retried after a lost connection: they change nothing or are idempotent.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


def quote_path(path: str) -> str:
    """A document path as URL segments (ids are URL-safe, but be exact)."""
    return "/".join(quote(seg, safe="-._~") for seg in path.strip("/").split("/") if seg)


class Connection:
    """One server, one set of credentials, one pooled HTTP session.

    ``retries`` 503 answers (and lost connections of idempotent requests) are retried
    after ``Retry-After`` or an exponential back-off starting at ``backoff`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        login: str | None = None,
        password: str | None = None,
        timeout: float = 300.0,
        retries: int = 6,
        backoff: float = 0.25,
        verify: bool | str = True,
    ) -> None:
        self.base = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers["User-Agent"] = "wendelin-python"
        self.csrf: str | None = None
        self.login = login
        # Kept to log in again when the session expires (a long notebook).
        self._password = password
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif login is not None:
            if password is None:
                raise ValueError("login needs a password")
            self._log_in()

    def _log_in(self) -> None:
        """Opens a session (``POST /login``): the cookie, and the CSRF token writes send."""
        self.session.cookies.clear()
        self.session.headers.pop("X-CSRF-Token", None)
        body = {"login": self.login, "password": self._password}
        reply = self.request("POST", "/login", json=body, relogin=False)
        self.csrf = reply.json().get("csrf_token")
        if self.csrf:
            self.session.headers["X-CSRF-Token"] = self.csrf

    # -- credentials for other HTTP stacks (fsspec, dask workers) --------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry this connection's credentials (bearer token, or the
        session cookie and its CSRF token)."""
        out: dict[str, str] = {}
        auth = self.session.headers.get("Authorization")
        if isinstance(auth, str):
            out["Authorization"] = auth
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        if cookies:
            out["Cookie"] = cookies
        if self.csrf:
            out["X-CSRF-Token"] = self.csrf
        return out

    def url(self, path: str) -> str:
        """The absolute URL of a server path (``/api/v1/…``)."""
        return self.base + (path if path.startswith("/") else "/" + path)

    # -- requests ---------------------------------------------------------------------

    def _sleep_before_retry(self, attempt: int, reply: requests.Response | None) -> None:
        delay = self.backoff * (2**attempt)
        if reply is not None:
            ra = reply.headers.get("Retry-After")
            if ra is not None:
                try:
                    delay = max(delay, float(ra))
                except ValueError:
                    pass
        time.sleep(min(delay, 30.0))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (),
        retry_connection: bool | None = None,
        relogin: bool = True,
    ) -> requests.Response:
        """Sends a request; returns the response of a 2xx (or a status in ``ok``),
        raises the matching :class:`~wendelin.errors.WendelinError` otherwise.

        503 is retried with back-off; a lost connection too when the method is
        idempotent (or ``retry_connection`` says so). A session that expired (401) is
        opened again once, and the request sent again."""
        if retry_connection is None:
            retry_connection = method in IDEMPOTENT
        attempt = 0
        while True:
            try:
                reply = self.session.request(
                    method,
                    self.url(path),
                    params=params,
                    json=json,
                    data=data,
                    headers=dict(headers or {}),
                    stream=stream,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as e:
                if not retry_connection or attempt >= self.retries:
                    raise Unavailable(f"{method} {path}: {e}") from e
                self._sleep_before_retry(attempt, None)
                attempt += 1
                continue
            if reply.status_code in RETRY_STATUSES and attempt < self.retries:
                reply.close()
                self._sleep_before_retry(attempt, reply)
                attempt += 1
                continue
            if reply.status_code < 300 or reply.status_code in ok:
                return reply
            if reply.status_code == 401 and relogin and self._password is not None:
                reply.close()
                self._log_in()
                relogin = False
                continue
            raise self.error(reply)

    @staticmethod
    def error(reply: requests.Response) -> WendelinError:
        """The exception for an error response."""
        try:
            body = reply.json()
        except ValueError:
            body = None
        text = "" if body is not None else reply.text[:500]
        return error_for(reply.status_code, body, text or reply.reason or "")

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """A request whose answer is JSON (or HTML text, returned as ``str``)."""
        reply = self.request(method, path, **kw)
        if reply.status_code == 204 or not reply.content:
            return None
        ctype = reply.headers.get("Content-Type", "")
        if "json" in ctype:
            return reply.json()
        return reply.text

    @contextmanager
    def streamed(self, method: str, path: str, **kw: Any) -> Iterator[requests.Response]:
        """A streamed response, closed when the block ends."""
        reply = self.request(method, path, stream=True, **kw)
        try:
            yield reply
        finally:
            reply.close()
