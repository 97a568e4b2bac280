"""What the job page reads: items with their result records (?results=true) page by page, and
when a job's latest run began, so its elapsed time is that run's and not its age."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import picky_job
from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def test_items_come_with_their_results_when_asked_and_keep_their_keyset_pages(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    data = files(5, bad=1)
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(data)]}).json()["id"]
        wait_for_end(http, job_id)
        items = f"/api/v1/jobs/{job_id}/items"

        plain = http.get(items, params={"status": "succeeded"}).json()
        assert [it["result"] for it in plain["items"]] == [None] * 4  # only when asked

        first = http.get(items, params={"status": "succeeded", "size": 3, "results": "true"}).json()
        rest = http.get(items, params={"status": "succeeded", "size": 3, "results": "true", "after": first["next"]})
        seen = first["items"] + rest.json()["items"]
        assert (first["total"], len(first["items"]), rest.json()["next"]) == (4, 3, None)
        assert [it["seq"] for it in seen] == sorted(it["seq"] for it in seen)  # in input order, each once
        for it in seen:
            name = Path(it["input"]).name
            assert it["result"] == {"bytes": len((data / name).read_bytes()), "name": name}

        [bad] = http.get(items, params={"status": "failed", "results": "true"}).json()["items"]
        assert bad["result"] is None  # a failed item has no result

        assert http.get(items, params={"results": "maybe"}).status_code == 422
        documented = http.get("/openapi.json").json()["paths"]["/api/v1/jobs/{job_id}/items"]["get"]["parameters"]
        assert "results" in [p["name"] for p in documented]


def test_a_jobs_times_are_those_of_its_latest_run(serve: Callable[..., LiveServer], tmp_path: Path) -> None:
    project, data = picky_job(tmp_path, ["a", "bad"])
    server = serve(projects=[project])
    with server.client() as http:
        job_id = http.post(
            "/api/v1/jobs", json={"pipeline": "picky", "inputs": [str(data)], "options": {"retries": 0}}
        ).json()["id"]
        wait_for_end(http, job_id)
        first = http.get(f"/api/v1/jobs/{job_id}").json()
        assert first["created_at"] <= first["started_at"] <= first["finished_at"]
        assert first["duration_s"] == pytest.approx(first["finished_at"] - first["started_at"], abs=0.01)

        (data / "row-1.txt").write_text("b\n")
        assert http.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
        wait_for_end(http, job_id)
        again = http.get(f"/api/v1/jobs/{job_id}").json()
        assert again["created_at"] == first["created_at"]
        assert again["started_at"] >= first["finished_at"]  # the retry's run, not the first one
        assert again["duration_s"] == pytest.approx(again["finished_at"] - again["started_at"], abs=0.01)
        listed = http.get("/api/v1/jobs").json()["jobs"][0]
        assert (listed["started_at"], listed["duration_s"]) == (again["started_at"], again["duration_s"])
