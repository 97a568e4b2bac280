"""`shoal serve` as users run it: jobs left running when it stops go on when it starts again;
`shoal submit --wait` follows a job to its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import shoal_cli
from tests.web_server import free_port, wait_for_end

pytestmark = pytest.mark.integration


class ServeProcess:
    def __init__(self, home: Path, project: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shoal", "serve", "--project", str(project), "--port", str(port), "-w", "1"],
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shoal serve did not start: {self.process.communicate()[0]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.process.send_signal(sig)
        output, _ = self.process.communicate(timeout=60)
        return output


@pytest.fixture
def started(home: Path) -> Iterator[Callable[[Path], ServeProcess]]:
    running: list[ServeProcess] = []

    def start(project: Path) -> ServeProcess:
        running.append(ServeProcess(home, project, free_port()))
        return running[-1]

    yield start
    for server in running:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)


def _wait_some_done(http: httpx.Client, job_id: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while http.get(f"/api/v1/jobs/{job_id}").json()["counts"]["succeeded"] < count:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_job_running_when_the_server_stops_finishes_after_it_starts_again(
    started: Callable[[Path], ServeProcess], tool_project: Callable[..., Path], files: Callable[..., Path], stop: int
) -> None:
    project, data = tool_project(sleep=0.05), files(60)
    first = started(project)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        body = {"pipeline": "tool", "inputs": [str(data)], "options": {"retries": 1}}
        job_id = http.post("/api/v1/jobs", json=body).json()["id"]
        _wait_some_done(http, job_id, 5)
    first.stop(stop)

    second = started(project)
    with httpx.Client(base_url=second.url, timeout=30) as http:
        end = wait_for_end(http, job_id)[-1][1]
        assert end["state"] == "succeeded"
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        assert job["counts"]["succeeded"] == 60
        assert job["options"]["retries"] == 1
        assert len(http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()) == 60
    second.stop()


def test_submit_waits_for_the_job_and_exits_like_run(
    started: Callable[[Path], ServeProcess], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    project = tool_project()
    server = started(project)
    ok = shoal_cli("submit", str(project), "--input", str(files(3, name="ok")), "--server", server.url, "--wait")
    assert ok.returncode == 0, ok.stderr
    assert "succeeded: 3 succeeded, 0 failed of 3" in ok.stdout
    bad = files(2, bad=1, name="mixed")
    failed = shoal_cli("submit", "tool", "--upload", "--input", str(bad), "--server", server.url, "--wait")
    assert failed.returncode == 1, failed.stderr
    assert "completed_with_errors: 1 succeeded, 1 failed of 2" in failed.stdout
    unknown = shoal_cli("submit", "nope", "--input", str(bad), "--server", server.url)
    assert unknown.returncode == 1
    assert "answered 404" in unknown.stderr
    assert "known pipelines: tool" in unknown.stderr
    down = shoal_cli("submit", "tool", "--input", str(bad), "--server", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert down.stderr.startswith("shoal: error: cannot reach the shoal server at http://127.0.0.1:9")
    server.stop()
    assert os.path.isdir(project)
