"""Token auth: a bearer token from `shoal token create`, or the login page's cookie.

Required on every route but /healthz, the login page and static assets when the server listens
on an address other machines can reach, and wherever --auth says. The check is a plain ASGI
middleware in front of every route (mounted apps included), so a server without auth pays nothing
per request. Known tokens are remembered for a few seconds, so a busy client does not cost a
database query per request; a revoked token stops working within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.errors import AuthenticationError, PermissionDeniedError
from shoal.store import Ledger
from shoal.store.tokens import token_hash, token_name

COOKIE = "shoal_token"
REMEMBER_S = 5.0  #: seconds a checked token is trusted without asking the database again


class Guard:
    """Decides whether a request may go on, and who sent it."""

    def __init__(self, ledger: Ledger, required: bool) -> None:
        self.ledger = ledger
        self.required = required
        self._known: dict[str, tuple[str, float]] = {}  #: token hash -> (name, checked at)
        self._lock = threading.Lock()

    def check(self, authorization: str | None, cookie: str | None) -> str | None:
        """The token's name; None when no token is needed and none was sent."""
        token = _bearer(authorization) or cookie
        if not token:
            if not self.required:
                return None
            raise AuthenticationError(
                "this server needs a token: send 'Authorization: Bearer TOKEN' or log in at /login "
                "(create one on the server with `shoal token create NAME`)"
            )
        name = self.name_of(token)
        if name is None:
            if not self.required:
                return None
            raise PermissionDeniedError("the token is not valid here (revoked, mistyped, or from another server)")
        return name

    def remembers(self, authorization: str | None, cookie: str | None) -> bool:
        """Whether check() can answer without the database."""
        token = _bearer(authorization) or cookie
        if not token:
            return True
        known = self._known.get(token_hash(token))
        return known is not None and time.monotonic() - known[1] < REMEMBER_S

    def name_of(self, token: str) -> str | None:
        digest, now = token_hash(token), time.monotonic()
        with self._lock:
            known = self._known.get(digest)
        if known is not None and now - known[1] < REMEMBER_S:
            return known[0]
        name = token_name(self.ledger, token)
        with self._lock:
            if name is None:
                self._known.pop(digest, None)
            else:
                self._known[digest] = (name, now)
        return name


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


#: paths anyone may reach: the health check, the login page and what it needs
OPEN = ("/healthz", "/login", "/static/", "/docs-static/", "/api/v1/session")


class TokenGate:
    """ASGI middleware: lets a request through with its token's name in ``scope["state"]["caller"]``,
    or answers 401/403 itself (a browser asking for a page is sent to /login instead)."""

    def __init__(self, app: ASGIApp, guard: Guard, open_paths: Sequence[str] = OPEN) -> None:
        self.app, self.guard, self.open_paths = app, guard, tuple(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (not self.guard.required and not _has_credentials(scope)):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/login" or path.startswith(self.open_paths):
            await self.app(scope, receive, send)
            return
        authorization, cookie, accept = _credentials(scope)
        try:
            if self.guard.remembers(authorization, cookie):
                name = self.guard.check(authorization, cookie)
            else:
                name = await run_in_threadpool(self.guard.check, authorization, cookie)
        except (AuthenticationError, PermissionDeniedError) as exc:
            await _refuse(scope, exc, accept)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = name
        await self.app(scope, receive, send)


def _has_credentials(scope: Scope) -> bool:
    return any(k in (b"authorization", b"cookie") for k, _ in scope["headers"])


def _credentials(scope: Scope) -> tuple[str | None, str | None, str]:
    authorization = cookie = None
    accept = ""
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value.decode("latin-1")
        elif key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no credential
                continue
            if COOKIE in jar:
                cookie = jar[COOKIE].value
        elif key == b"accept":
            accept = value.decode("latin-1")
    return authorization, cookie, accept


def _refuse(scope: Scope, exc: Exception, accept: str) -> Response:
    path: str = scope["path"]
    if "text/html" in accept and not path.startswith(("/api/", "/openapi.json")):
        query = scope.get("query_string", b"").decode("latin-1")
        return RedirectResponse("/login?next=" + quote(path + (f"?{query}" if query else "")), status_code=303)
    status = 401 if isinstance(exc, AuthenticationError) else 403
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
