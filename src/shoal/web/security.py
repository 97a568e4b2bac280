"""Token auth: a bearer token from `shoal token create`, or the login page's cookie.

Required on every route but /healthz, the login page and static assets when the server listens
on an address other machines can reach, and wherever --auth says. Known tokens are remembered for
a few seconds, so a busy client does not cost a database query per request; a revoked token stops
working within that time.
"""

from __future__ import annotations

import threading
import time

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
