"""The last line of defence: a bug answers JSON 500 and keeps the connection for the next request."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from tests.web_server import LiveServer, one_connection

pytestmark = pytest.mark.integration


async def _boom(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug, not a request's fault")


def test_an_unexpected_error_answers_500_without_closing_the_connection(home: Path) -> None:
    """Starlette's own handler answers too, but re-raises: the server then drops the connection."""
    server = LiveServer(mounts={"/boom": _boom}).start()
    try:
        with one_connection(server) as ask:
            status, body = ask("GET", "/boom/x")
            assert (status, body) == (500, {"detail": "internal error: see the server's log"})
            assert ask("GET", "/healthz")[0] == 200
    finally:
        server.stop()
