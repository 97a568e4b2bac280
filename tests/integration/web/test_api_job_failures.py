"""A job that cannot start, or stops on an error, ends failed with the reason: never running or
pending forever, and its slot serves the next job."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


#: a pipeline whose items wait until a file appears: the test decides when the first job ends
GATE = """
import time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("gate")

@pipeline.stage()
def wait(item):
    while not Path({gate!r}).exists():
        time.sleep(0.02)
    return {{"name": item.input.rsplit("/", 1)[-1]}}
"""


def _gate_project(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "project-gate"
    folder.mkdir()
    gate = tmp_path / "open-the-gate"
    (folder / "pipeline.py").write_text(GATE.format(gate=str(gate)))
    return folder, gate


def _settled(http: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it has finished, or as it is after ``timeout`` seconds (a job stuck running
    with its error would hang an SSE wait: this is a guard against that hang, not a timing test)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = http.get(f"/api/v1/jobs/{job_id}").json()
    while not job["finished_at"] and time.monotonic() < deadline:
        time.sleep(0.05)
        job = http.get(f"/api/v1/jobs/{job_id}").json()
    return job


def test_a_job_whose_input_vanishes_before_it_starts_ends_failed_with_the_reason(
    serve: Callable[..., LiveServer], files: Callable[..., Path], tmp_path: Path
) -> None:
    project, gate = _gate_project(tmp_path)
    server = serve(projects=[project], max_jobs=1)
    first, second = files(1, name="first"), files(2, name="second")
    with server.client() as http:
        blocking = http.post("/api/v1/jobs", json={"pipeline": "gate", "inputs": [str(first)]}).json()["id"]
        queued = http.post("/api/v1/jobs", json={"pipeline": "gate", "inputs": [str(second)]}).json()
        assert queued["queued"] is True
        for path in second.iterdir():
            path.unlink()
        second.rmdir()
        gate.touch()
        assert wait_for_end(http, blocking)[-1][1]["state"] == "succeeded"
        job = _settled(http, queued["id"])
        assert job["state"] == "failed", job
        assert job["finished_at"] is not None
        assert str(second) in job["error"]
        assert wait_for_end(http, queued["id"])[-1][1]["state"] == "failed"  # followers hear the end too


def test_jobs_that_cannot_start_fail_with_the_reason_and_leave_their_slot_free(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    """An engine that cannot be made (here: celery with no broker) fails the job, not the slot."""
    server = serve(projects=[tool_project()], engine="celery", max_jobs=1)
    with server.client() as http:
        for n in range(2):  # the second finds the slot alive
            created = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1, name=f"f{n}"))]})
            assert created.status_code == 202, created.text
            job = _settled(http, created.json()["id"])
            assert (job["state"], job["finished_at"] is not None) == ("failed", True), job
            assert "broker" in job["error"]


def test_a_job_that_stops_on_an_unexpected_error_ends_failed_with_it(
    serve: Callable[..., LiveServer],
    tool_project: Callable[..., Path],
    files: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever goes wrong once a job was claimed (here: a bug), it ends failed, naming the error."""
    import shoal.web.service as service

    def broken(ledger: Any, plan: Any, **_: Any) -> None:
        ledger.claim(plan.job.id, "test")  # it got as far as running
        raise RuntimeError("a bug in the run")

    monkeypatch.setattr(service, "execute", broken)
    server = serve(projects=[tool_project()], max_jobs=1)
    with server.client() as http:
        for n in range(2):
            created = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1, name=f"f{n}"))]})
            job = _settled(http, created.json()["id"])
            assert (job["state"], job["error"]) == ("failed", "RuntimeError: a bug in the run"), job
            assert wait_for_end(http, job["id"])[-1][1]["state"] == "failed"
