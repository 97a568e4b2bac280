"""A real shoal server for tests: the app from create_app, served by uvicorn on a free port."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from shoal.web import ServerSettings, create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn on a thread; ``url`` once started; stop() runs the app's shutdown (jobs stop)."""

    def __init__(self, mounts: dict[str, ASGIApp] | None = None, **settings: Any) -> None:
        settings.setdefault("port", free_port())
        settings.setdefault("workers", 1)
        self.settings = ServerSettings.build(**settings)
        self.app = create_app(self.settings, mounts=mounts)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.settings.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.app.state.parts.service.begin_shutdown()
        self.server.should_exit = True
        self.thread.join(60)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def wait_for_end(client: httpx.Client, job_id: str, timeout: float = 120) -> list[tuple[str, dict[str, Any]]]:
    """Follow a job's SSE stream to its end; returns every (event, data) seen."""
    seen: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                seen.append((event, json.loads(line[5:])))
                if event == "end":
                    return seen
    raise AssertionError(f"the event stream of {job_id} closed without an end event: {seen[-3:]}")


def running(server: LiveServer) -> Iterator[LiveServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


Ask = Callable[..., tuple[int, Any]]  #: ask(method, path, body=None, headers=None) -> (status, body)


@contextmanager
def one_connection(server: LiveServer) -> Iterator[Ask]:
    """``ask(method, path, body=None, headers=None)`` -> (status, JSON), all on one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=60)
    conn.auto_open = 0  # a request after a reset fails instead of quietly reconnecting
    conn.connect()

    def ask(method: str, path: str, body: str | bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        sent = {"content-type": "application/json"} if isinstance(body, str) else {}
        conn.request(
            method, path, body=body.encode() if isinstance(body, str) else body, headers=sent | (headers or {})
        )
        response = conn.getresponse()
        raw = response.read()
        assert response.getheader("connection") != "close", (method, path, response.status, raw)
        return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw

    try:
        yield ask
    finally:
        conn.close()
