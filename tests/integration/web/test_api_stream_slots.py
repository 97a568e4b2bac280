"""Streaming jobs cannot starve the server: open streams run beside the --max-jobs slots, with a
limit of their own (--max-streams), and an idle stream closes itself when --stream-idle-timeout
says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def _open_stream(http: httpx.Client, items: list[Path]) -> str:
    created = http.post("/api/v1/jobs", json={"pipeline": "tool", "stream": True})
    assert created.status_code == 202, created.text
    job_id: str = created.json()["id"]
    sent = http.post(f"/api/v1/jobs/{job_id}/items", json={"items": [{"uri": str(p)} for p in items]})
    assert sent.status_code == 202, sent.text
    return job_id


def _until(ask: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 120) -> Any:
    """Ask until the answer is done, or give up (a guard against a hang, not a timing check)."""
    deadline = time.monotonic() + timeout
    answer = ask()
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = ask()
    return answer


def test_open_streams_do_not_keep_an_ordinary_job_waiting(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()], max_jobs=1)
    data = sorted(files(3).iterdir())
    with server.client() as http:
        streams = [_open_stream(http, [path]) for path in data]  # three streams, never closed
        for job_id in streams:  # each one runs: it took its item
            job = _until(lambda j=job_id: http.get(f"/api/v1/jobs/{j}").json(), lambda j: j["counts"]["succeeded"])
            assert job["counts"]["succeeded"] == 1, job
        ordinary = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(2, name="more"))]})
        assert ordinary.status_code == 202
        end = wait_for_end(http, ordinary.json()["id"])[-1][1]
        assert (end["state"], end["succeeded"]) == ("succeeded", 2)
        load = _until(lambda: http.get("/healthz").json(), lambda h: h["running"] == 3)  # the job's slot is let go
        assert (load["running"], load["queued"]) == (3, 0)  # the three streams, still open
        for job_id in streams:
            assert http.get(f"/api/v1/jobs/{job_id}").json()["state"] == "running"


def test_streams_beyond_max_streams_wait_for_a_stream_to_close(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()], max_jobs=1, max_streams=1)
    first, second = sorted(files(2).iterdir())
    with server.client() as http:
        running = _open_stream(http, [first])
        waiting = _open_stream(http, [second])  # its items are kept until it starts
        assert http.get(f"/api/v1/jobs/{waiting}").json()["queued"] is True
        ordinary = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1, name="more"))]})
        assert wait_for_end(http, ordinary.json()["id"])[-1][1]["state"] == "succeeded"
        assert http.get(f"/api/v1/jobs/{waiting}").json()["queued"] is True
        assert http.post(f"/api/v1/jobs/{running}/items", json={"close": True}).status_code == 202
        assert wait_for_end(http, running)[-1][1]["succeeded"] == 1
        assert http.post(f"/api/v1/jobs/{waiting}/items", json={"close": True}).status_code == 202
        end = wait_for_end(http, waiting)[-1][1]
        assert (end["state"], end["succeeded"]) == ("succeeded", 1)


def test_an_idle_stream_closes_itself_after_the_timeout_and_says_so(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()], stream_idle_timeout=1)
    with server.client() as http:
        job_id = _open_stream(http, sorted(files(2).iterdir()))  # and then nothing more
        end = wait_for_end(http, job_id)[-1][1]
        assert (end["state"], end["succeeded"]) == ("succeeded", 2)
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        assert "without new items" in job["error"]
        assert "--stream-idle-timeout" in job["error"]
        later = http.post(f"/api/v1/jobs/{job_id}/items", json={"items": [{"uri": "x"}]})
        assert later.status_code == 409


#: a pipeline whose items wait until a file appears: the test decides when a job may end
GATE = """
import time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("gate")

@pipeline.stage()
def wait(item):
    while not Path({gate!r}).exists():
        time.sleep(0.02)
    return {{}}
"""


def test_a_closed_stream_takes_no_more_items_even_before_it_ends(
    serve: Callable[..., LiveServer], files: Callable[..., Path], tmp_path: Path
) -> None:
    """Items sent after the close would never be read: they are refused, not silently dropped."""
    project, gate = tmp_path / "project-gate", tmp_path / "gate-open"
    project.mkdir()
    (project / "pipeline.py").write_text(GATE.format(gate=str(gate)))
    server = serve(projects=[project])
    data = sorted(files(2).iterdir())
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "gate", "stream": True}).json()["id"]
        closing = http.post(f"/api/v1/jobs/{job_id}/items", json={"items": [{"uri": str(data[0])}], "close": True})
        assert closing.status_code == 202
        late = http.post(f"/api/v1/jobs/{job_id}/items", json={"items": [{"uri": str(data[1])}]})
        assert late.status_code == 409, late.text
        assert "closed" in late.json()["detail"]
        assert http.get(f"/api/v1/jobs/{job_id}").json()["finished_at"] is None  # it had not ended yet
        gate.touch()
        end = wait_for_end(http, job_id)[-1][1]
        assert (end["state"], end["total"]) == ("succeeded", 1)
