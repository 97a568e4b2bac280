"""Streaming jobs: a Redis stream as input, `shoal feed` sending at a controlled rate, each item's
end-to-end latency recorded, and a coordinator killed mid-stream losing nothing."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.engines import REDIS_URL, require_service
from tests.helpers import kill_9, read_results, shoal_cli, start_cli, succeeded_when

pytestmark = pytest.mark.integration

FRAMES = """
import shoal
pipeline = shoal.Pipeline("frames")

@pipeline.stage()
def size(item):
    data = item.read_bytes()
    return {"bytes": len(data), "header": data[:2].decode()}
"""


def _stream() -> str:
    require_service(6379)
    return f"{REDIS_URL.replace('redis://', 'redis+stream://')}/frames-{uuid.uuid4().hex[:8]}"


def _feed(home: Path, stream: str, *args: str) -> str:
    done = shoal_cli(
        "feed",
        stream,
        "--frame",
        "64x48",
        "--store",
        str(home / "store"),
        "--log",
        str(home / "feed.csv"),
        *args,
        cwd=home,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_stream_job_takes_items_as_they_arrive_and_ends_on_close(home: Path, make_project: MakeProject) -> None:
    stream = _stream()
    project = make_project(FRAMES)
    job = start_cli("run", str(project), "-i", stream, "-w", "2", cwd=home)
    said = _feed(home, stream, "--rate", "40", "--duration", "2", "--close")
    assert "sent 80 items" in said
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 0, stderr

    with (home / "feed.csv").open(newline="") as handle:
        sent = list(csv.DictReader(handle))
    assert len(sent) == 80
    assert set(sent[0]) == {"time", "bytes", "item", "uri"}
    out = next((home / "shoal-runs").glob("frames-*"))
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(s["item"] for s in sent)
    assert all(r["result"] == {"bytes": int(sent[0]["bytes"]), "header": "P6"} for r in results)
    assert all(0 < r["latency_s"] < 60 for r in results)
    report = json.loads((out / "report.json").read_text())
    assert report["latency_seconds"]["count"] == 80
    assert "end-to-end latency of streamed items" in (out / "performance.txt").read_text()


def test_killing_the_coordinator_mid_stream_loses_nothing(home: Path, make_project: MakeProject) -> None:
    stream = _stream()
    project = make_project(FRAMES)
    command = ("run", str(project), "-i", stream, "-w", "2")
    first = start_cli(*command, cwd=home)
    _feed(home, stream, "--rate", "50", "--duration", "1")
    succeeded_when(home, 20)
    kill_9(first)
    _feed(home, stream, "--rate", "50", "--duration", "1", "--close")  # items sent while no one listens
    again = shoal_cli(*command, cwd=home)
    assert again.returncode == 0, again.stderr
    results = read_results(next((home / "shoal-runs").glob("frames-*")))
    assert len(results) == 100
    assert len({r["id"] for r in results}) == 100
