"""The REST API against the real app and the embedded engine: submit, follow, inspect, download."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def test_a_job_runs_and_everything_about_it_can_be_read_and_downloaded(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    data = files(6, bad=1)
    with server.client() as http:
        assert http.get("/api/v1/pipelines").json()[0]["stages"] == [{"name": "measure", "batch_size": None}]
        response = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(data)]})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        events = wait_for_end(http, job_id)
        assert events[-1] == ("end", events[-1][1])
        assert events[-1][1]["state"] == "completed_with_errors"  # one item failed, the rest succeeded

        job = http.get(f"/api/v1/jobs/{job_id}").json()
        assert job["counts"] == {"total": 6, "succeeded": 5, "failed": 1, "pending": 0, "cancelled": 0}
        assert job["finished_at"] is not None
        assert job["queued"] is False

        failed = http.get(f"/api/v1/jobs/{job_id}/items", params={"status": "failed"}).json()
        assert failed["total"] == 1
        bad = failed["items"][0]
        assert bad["error_type"] == "ItemError"
        assert "bad on purpose" in bad["error_message"]
        detail = http.get(f"/api/v1/jobs/{job_id}/items/{bad['id']}").json()
        assert detail["artifacts"] == []
        assert detail["attempts_log"][-1]["kind"] == "failed"

        first = http.get(f"/api/v1/jobs/{job_id}/items", params={"status": "succeeded", "size": 2}).json()
        page = http.get(
            f"/api/v1/jobs/{job_id}/items", params={"status": "succeeded", "size": 2, "after": first["next"]}
        ).json()
        assert (page["total"], len(page["items"])) == (5, 2)
        assert page["items"][0]["seq"] > first["items"][-1]["seq"]  # the page after, by position
        good = http.get(f"/api/v1/jobs/{job_id}/items/{page['items'][0]['id']}").json()
        assert good["result"]["bytes"] == len(Path(good["input"]).read_bytes())
        [artifact] = good["artifacts"]
        assert artifact["name"] == "copy.txt"
        assert http.get(artifact["url"]).content == Path(good["input"]).read_bytes()

        lines = http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == sorted(
            i["id"] for i in http.get(f"/api/v1/jobs/{job_id}/items", params={"status": "succeeded"}).json()["items"]
        )
        rows = list(csv.DictReader(io.StringIO(http.get(f"/api/v1/jobs/{job_id}/results.csv").text)))
        assert len(rows) == 5
        assert {"bytes", "name"} <= set(rows[0])
        table = pq.read_table(io.BytesIO(http.get(f"/api/v1/jobs/{job_id}/results.parquet").content))
        assert table.num_rows == 5
        assert str(table.schema.field("bytes").type) == "int64"
        errors = list(csv.DictReader(io.StringIO(http.get(f"/api/v1/jobs/{job_id}/errors.csv").text)))
        assert [e["id"] for e in errors] == [bad["id"]]

        report = http.get(f"/api/v1/jobs/{job_id}/report").json()
        assert report["items"]["succeeded"] == 5
        for chart in ("runtime.png", "throughput.png"):
            image = http.get(f"/api/v1/jobs/{job_id}/report/{chart}")
            assert image.headers["content-type"] == "image/png"
            assert image.content.startswith(b"\x89PNG")

        archive = zipfile.ZipFile(io.BytesIO(http.get(f"/api/v1/jobs/{job_id}/artifacts.zip").content))
        names = set(archive.namelist())
        assert {"results.jsonl", "results.csv", "errors.csv", "report.json", "runtime.png", "throughput.png"} <= names
        assert sum(n.endswith("/copy.txt") for n in names) == 5
        one = zipfile.ZipFile(
            io.BytesIO(http.get(f"/api/v1/jobs/{job_id}/artifacts.zip", params={"item": good["id"]}).content)
        )
        assert one.namelist() == [f"{good['id']}/copy.txt"]


def test_progress_events_arrive_while_the_job_runs(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project(sleep=0.1)])
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(12))]}).json()["id"]
        events = wait_for_end(http, job_id)
    progress = [data for name, data in events if name == "progress" and data.get("state") == "running"]
    finished = [data["succeeded"] for data in progress]
    assert len(set(finished)) >= 3, events  # counts went up step by step, not only at the end
    assert finished == sorted(finished)
    assert events[-1][1]["succeeded"] == 12


#: each item takes STEPS steps and says how far it has got after each
STEPPING = """
import time
import shoal

pipeline = shoal.Pipeline("stepping")
STEPS = 25

@pipeline.stage()
def step(item):
    for done in range(1, STEPS + 1):
        time.sleep(0.08)
        item.progress(done, STEPS)
    return {"steps": STEPS}
"""


def test_a_running_items_own_progress_is_live_in_the_events_and_the_job(
    serve: Callable[..., LiveServer], tmp_path: Path, files: Callable[..., Path]
) -> None:
    project = tmp_path / "stepping"
    project.mkdir()
    (project / "pipeline.py").write_text(STEPPING)
    server = serve(projects=[project])  # one worker: the items run one after the other
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "stepping", "inputs": [str(files(2))]}).json()["id"]
        live: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(0 < r["done"] < 25 for r in live):
            job = http.get(f"/api/v1/jobs/{job_id}").json()
            live = (job.get("live") or {}).get("running") or []
            time.sleep(0.05)
        events = wait_for_end(http, job_id)
    [row] = [r for r in live if 0 < r["done"] < 25]
    assert (row["stage"], row["total"]) == ("step", 25)
    [item] = row["items"]
    assert item.startswith("file-")
    assert row["count"] == 1
    seen: dict[str, list[int]] = {}
    for name, data in events:
        for r in data.get("running", []) if name == "progress" else []:
            seen.setdefault(r["items"][0], []).append(r["done"])
    assert seen, events
    for item, dones in seen.items():
        assert dones == sorted(dones), (item, dones)  # each item's count only goes up
    last = seen[max(seen)]  # the second item ran while the events were followed from its start
    assert len(set(last)) >= 3, seen  # its count is heard step by step, not only at the end
    assert events[-1][1]["succeeded"] == 2
    assert "running" not in events[-1][1] or events[-1][1]["running"] == []


def test_the_same_submission_returns_the_same_job_unless_new_is_asked(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    body = {"pipeline": "tool", "inputs": [str(files(2))]}
    with server.client() as http:
        first = http.post("/api/v1/jobs", json=body).json()["id"]
        wait_for_end(http, first)
        again = http.post("/api/v1/jobs", json=body).json()
        assert (again["id"], again["state"]) == (first, "succeeded")
        fresh = http.post("/api/v1/jobs", json={**body, "options": {"new": True, "retries": 0}}).json()
        assert fresh["id"] != first
        assert fresh["options"]["retries"] == 0
        wait_for_end(http, fresh["id"])
        listed = http.get("/api/v1/jobs", params={"state": "succeeded", "size": 1}).json()
        assert (listed["total"], len(listed["jobs"]), listed["jobs"][0]["id"]) == (2, 1, fresh["id"])


def test_cancel_stops_a_running_job_and_cancels_its_remaining_items(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project(sleep=0.3)])
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(40))]}).json()["id"]
        with http.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
            for line in response.iter_lines():  # wait until the first item is done
                if line.startswith("data:") and json.loads(line[5:]).get("succeeded", 0) >= 1:
                    break
        assert http.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202
        end = wait_for_end(http, job_id)[-1][1]
        assert end["state"] == "cancelled"
        counts = http.get(f"/api/v1/jobs/{job_id}").json()["counts"]
        assert counts["cancelled"] >= 1
        assert counts["pending"] == 0
        again = http.post(f"/api/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409
        assert "already cancelled" in again.json()["detail"]


def test_jobs_of_a_server_are_on_postgresql_when_it_is_told_so(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path], postgres_url: str
) -> None:
    server = serve(projects=[tool_project()], db_url=postgres_url)
    with server.client() as http:
        assert http.get("/healthz").json()["database"] == "postgresql"
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(5, bad=1))]}).json()["id"]
        assert wait_for_end(http, job_id)[-1][1]["state"] == "completed_with_errors"
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        assert job["counts"]["succeeded"] == 4
        assert len(http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()) == 4
        failed = http.get(f"/api/v1/jobs/{job_id}/items", params={"status": "failed"}).json()["items"]
        assert "bad on purpose" in failed[0]["error_message"]


def test_workers_stay_warm_from_one_job_to_the_next(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    workers = []
    with server.client() as http:
        for n in range(3):
            job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1, name=f"f{n}"))]})
            job_id = job_id.json()["id"]
            assert wait_for_end(http, job_id)[-1][1]["state"] == "succeeded"
            workers.append(http.get(f"/api/v1/jobs/{job_id}/items").json()["items"][0]["worker"])
    assert len(set(workers)) == 1, workers  # one process ran all three: it outlived each job's run


def test_an_edited_pipeline_is_served_without_a_restart(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    project = tool_project()
    code = project / "pipeline.py"
    server = serve(projects=[project])
    data = files(2)
    with server.client() as http:
        before = http.get("/api/v1/pipelines/tool").json()
        first = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(data)]}).json()["id"]
        assert wait_for_end(http, first)[-1][1]["state"] == "succeeded"

        code.write_text(code.read_text().replace('"bytes": len(data)', '"bytes": len(data), "edited": True'))
        after = _poll(lambda: http.get("/api/v1/pipelines/tool").json(), lambda p: p != before)
        assert after["fingerprint"] != before["fingerprint"]  # seen within a second or so: no restart
        second = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(data)]}).json()
        assert second["id"] != first  # new code, new job
        assert second["fingerprint"] == after["fingerprint"]
        assert wait_for_end(http, second["id"])[-1][1]["state"] == "succeeded"
        results = http.get(f"/api/v1/jobs/{second['id']}/results.jsonl").text.splitlines()
        assert [json.loads(line)["result"]["edited"] for line in results] == [True, True]  # not the warm old code

        code.write_text(code.read_text() + "\ndef broken(:\n")
        submit = lambda: http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(data)]})  # noqa: E731
        broken = _poll(submit, lambda r: r.status_code == 503)
        assert broken.status_code == 503
        assert "pipeline.py, line" in broken.json()["detail"]
        assert "syntax error" in broken.json()["detail"]
        assert http.get("/api/v1/pipelines").json()[0]["fingerprint"] == after["fingerprint"]  # still listed


def _poll(ask: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10) -> Any:
    """Ask until the answer is done (the server looks at pipeline code once a second)."""
    deadline = time.monotonic() + timeout
    answer = ask()
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = ask()
    return answer


COUNTED = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("counted")
LOG = Path({log!r})

@pipeline.stage()
def work(item):
    time.sleep(0.05)
    with LOG.open("a") as log:
        log.write(item.id + "\\n")
    return {{}}
"""


def test_identical_submissions_at_the_same_instant_make_one_job_run_once(
    serve: Callable[..., LiveServer], tmp_path: Path, files: Callable[..., Path]
) -> None:
    import threading

    import httpx

    project = tmp_path / "counted"
    project.mkdir()
    log = tmp_path / "processed.log"
    (project / "pipeline.py").write_text(COUNTED.format(log=str(log)))
    server = serve(projects=[project], max_jobs=4)
    for round_ in range(3):  # each round a job of its own, asked for by six clients at once
        data = files(8, name=f"round-{round_}")
        start = threading.Barrier(6)
        answers: list[httpx.Response] = []

        def submit(start: threading.Barrier, answers: list[httpx.Response], data: Path) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                start.wait()
                answers.append(http.post("/api/v1/jobs", json={"pipeline": "counted", "inputs": [str(data)]}))

        clients = [threading.Thread(target=submit, args=(start, answers, data)) for _ in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
        ids = {a.json()["id"] for a in answers}
        assert len(ids) == 1, f"identical submissions made {len(ids)} jobs"
        with server.client() as http:
            wait_for_end(http, ids.pop())
    processed = log.read_text().split()
    assert len(processed) == len(set(processed)) == 24, "a job was run twice"
    with server.client() as http:
        assert http.get("/api/v1/jobs").json()["total"] == 3
