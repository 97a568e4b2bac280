"""A real shoal server for tests: the app from create_app, served by uvicorn on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from shoal.web import ServerSettings, create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn on a thread; ``url`` once started; stop() runs the app's shutdown (jobs stop)."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("port", free_port())
        settings.setdefault("workers", 1)
        self.settings = ServerSettings.build(**settings)
        self.app = create_app(self.settings)
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
    import json

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
