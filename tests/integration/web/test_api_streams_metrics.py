"""The service's streaming jobs (items POSTed as they come, `shoal feed` included) and its
/metrics, which agree with the ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import shoal_cli
from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def _series(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            found[labels[len(name) :]] = float(value)
    return found


def test_metrics_agree_with_the_ledger(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(7, bad=2))]}).json()["id"]
        wait_for_end(http, job_id)
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        text = http.get("/metrics").text
    items = _series(text, "shoal_items_total")
    assert items['{outcome="succeeded",pipeline="tool"}'] == job["counts"]["succeeded"] == 5
    assert items['{outcome="failed",pipeline="tool"}'] == job["counts"]["failed"] == 2
    assert _series(text, "shoal_jobs")['{state="completed_with_errors"}'] == 1
    assert _series(text, "shoal_jobs")['{state="failed"}'] == 0
    assert sum(_series(text, "shoal_worker_items_total").values()) == 7


def test_a_streaming_job_takes_posted_items_until_closed(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path], home: Path
) -> None:
    server = serve(projects=[tool_project()])
    data = files(5, bad=1)
    with server.client() as http:
        created = http.post("/api/v1/jobs", json={"pipeline": "tool", "stream": True})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        first = [{"uri": str(p), "id": p.stem} for p in sorted(data.iterdir())[:3]]
        assert http.post(f"/api/v1/jobs/{job_id}/items", json={"items": first}).json() == {
            "accepted": 3,
            "closed": False,
        }
        assert http.post("/api/v1/jobs", json={"pipeline": "tool", "stream": True, "inputs": ["x"]}).status_code == 422

        # shoal feed sends more over HTTP, then closes the job
        url = f"{server.url}/api/v1/jobs/{job_id}/items"
        where = ("--input", str(data), "--store", str(home / "fed"), "--log", str(home / "feed.csv"))
        fed = shoal_cli("feed", url, "--rate", "20", "--duration", "1", *where, "--close", cwd=home)
        assert fed.returncode == 0, fed.stderr
        sent = len((home / "feed.csv").read_text().splitlines()) - 1
        assert sent == 20

        events = wait_for_end(http, job_id)
        assert events[-1][1]["state"] == "completed_with_errors"  # the bad file fails, as it would in any job
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        assert job["counts"]["total"] == 3 + sent
        later = http.post(f"/api/v1/jobs/{job_id}/items", json={"items": first})
        assert later.status_code == 409
        lines = [json.loads(line) for line in http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()]
    assert all(line["latency_s"] >= 0 for line in lines)
    assert {"file-001", "file-002"} <= {line["id"] for line in lines}
