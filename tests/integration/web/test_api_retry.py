"""POST /api/v1/jobs/{id}/retry: a finished job's failed items run again, and only those."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import picky_job
from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def test_a_retried_job_runs_its_failed_items_again_and_ends_with_all_of_them(
    serve: Callable[..., LiveServer], tmp_path: Path
) -> None:
    project, data = picky_job(tmp_path, ["a", "bad", "c", "bad"])
    server = serve(projects=[project])
    with server.client() as http:
        job = http.post("/api/v1/jobs", json={"pipeline": "picky", "inputs": [str(data)], "options": {"retries": 0}})
        job_id = job.json()["id"]
        wait_for_end(http, job_id)
        assert http.get(f"/api/v1/jobs/{job_id}").json()["counts"]["failed"] == 2

        (data / "row-1.txt").write_text("b\n")
        (data / "row-3.txt").write_text("d\n")
        answer = http.post(f"/api/v1/jobs/{job_id}/retry")
        assert answer.status_code == 202, answer.text
        assert answer.json()["id"] == job_id
        assert answer.json()["state"] in ("pending", "running")
        assert answer.json()["counts"]["failed"] == 0
        assert answer.json()["counts"]["pending"] == 2
        assert wait_for_end(http, job_id)[-1][1]["state"] == "succeeded"

        view = http.get(f"/api/v1/jobs/{job_id}").json()
        assert view["state"] == "succeeded"
        assert view["counts"] == {**view["counts"], "succeeded": 4, "failed": 0, "pending": 0}
        rows = [json.loads(line) for line in http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()]
        assert sorted(r["result"]["text"] for r in rows) == ["a", "b", "c", "d"]  # each item once
        assert sorted(r["attempts"] for r in rows) == [1, 1, 2, 2]
        assert http.get("/api/v1/jobs").json()["total"] == 1  # the same job, not another

        again = http.post(f"/api/v1/jobs/{job_id}/retry")
        assert again.status_code == 409
        assert "has no failed items to retry" in again.json()["detail"]
        assert http.post("/api/v1/jobs/no-such-job/retry").status_code == 404


ROWS = """
import shoal
pipeline = shoal.Pipeline("rows")

@pipeline.stage()
def check(item):
    if item.meta["value"] == "bad":
        raise ValueError("a bad value")
    return {"value": int(item.meta["value"])}
"""


def test_a_retry_through_the_api_reads_a_fixed_row_unless_told_to_keep_the_first_read(
    serve: Callable[..., LiveServer], tmp_path: Path
) -> None:
    project = tmp_path / "rows"
    project.mkdir()
    (project / "pipeline.py").write_text(ROWS)
    table = tmp_path / "table.csv"
    table.write_text("name,value\na,1\nb,bad\n")
    server = serve(projects=[project])
    with server.client() as http:
        job = http.post("/api/v1/jobs", json={"pipeline": "rows", "inputs": [str(table)], "options": {"retries": 0}})
        job_id = job.json()["id"]
        assert wait_for_end(http, job_id)[-1][1]["state"] == "completed_with_errors"

        table.write_text("name,value\na,1\nb,2\n")
        kept = http.post(f"/api/v1/jobs/{job_id}/retry", params={"same_inputs": "true"})
        assert kept.status_code == 202, kept.text
        assert wait_for_end(http, job_id)[-1][1]["state"] == "completed_with_errors"  # b as first read

        assert http.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
        assert wait_for_end(http, job_id)[-1][1]["state"] == "succeeded"
        rows = [json.loads(line) for line in http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()]
        assert sorted(r["result"]["value"] for r in rows) == [1, 2]


def test_delete_removes_a_finished_job_with_its_files_and_refuses_a_queued_one(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project(sleep=0.5)], max_jobs=1)
    with server.client() as http:
        upload = http.post("/api/v1/jobs/upload", data={"pipeline": "tool"}, files=[("files", ("a.txt", b"abc"))])
        assert upload.status_code == 202, upload.text
        done = upload.json()["id"]
        wait_for_end(http, done)
        out = Path(http.get(f"/api/v1/jobs/{done}").json()["out"])
        assert (out / "job.json").is_file()
        uploaded = Path(http.get(f"/api/v1/jobs/{done}").json()["inputs"][0])
        assert uploaded.exists()

        busy = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(4))]}).json()["id"]
        refused = http.delete(f"/api/v1/jobs/{busy}")
        assert refused.status_code == 409, refused.text
        assert "cancel it first" in refused.json()["detail"]

        gone = http.delete(f"/api/v1/jobs/{done}")
        assert gone.status_code == 204, gone.text
        assert http.get(f"/api/v1/jobs/{done}").status_code == 404
        assert not out.exists()
        assert not uploaded.exists()
        assert [j["id"] for j in http.get("/api/v1/jobs").json()["jobs"]] == [busy]
        assert http.delete(f"/api/v1/jobs/{done}").status_code == 404
        wait_for_end(http, busy)
        assert http.delete(f"/api/v1/jobs/{busy}").status_code == 204
