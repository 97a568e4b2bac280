"""Streaming jobs: a Redis stream as input, `shoal feed` sending at a controlled rate, each item's
end-to-end latency recorded, and a coordinator killed mid-stream losing nothing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import shoal
from tests.conftest import MakeProject
from tests.engines import REDIS_URL, require_service
from tests.helpers import kill_9, ledger_in, read_errors, read_results, shoal_cli, start_cli, succeeded_when

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


PACED = """
import time
from pathlib import Path
import shoal
pipeline = shoal.Pipeline("paced")
HURRY = Path({hurry!r})

@pipeline.stage()
def size(item):
    if not HURRY.exists():
        time.sleep(0.002)
    return {{"bytes": len(item.read_bytes())}}
"""


def test_a_stream_killed_after_its_close_was_read_still_ends_on_the_next_run(
    home: Path, make_project: MakeProject
) -> None:
    """The close message is read long before the items before it are done: a run killed then must
    still find it on the next run, not wait for an end that never comes again."""
    import redis

    stream = _stream()
    redis_url, name = stream.replace("redis+stream://", "redis://").rsplit("/", 1)
    client = redis.Redis.from_url(redis_url)
    payload = home / "payload.bin"
    payload.write_bytes(b"x" * 100)
    with client.pipeline() as sending:
        for _ in range(9000):
            sending.xadd(name, {"uri": str(payload)})
        sending.xadd(name, {"close": "1"})
        sending.execute()
    project = make_project(PACED.format(hurry=str(home / "hurry")))
    command = ("run", str(project), "-i", stream, "-w", "1")
    first = start_cli(*command, cwd=home)
    ledger = None
    try:
        deadline = time.monotonic() + 60
        while True:  # every message read and its row written, the run not over
            assert time.monotonic() < deadline, "the stream was never ingested"
            assert first.poll() is None, first.communicate()[1]
            if (home / "shoal-runs" / "ledger.db").exists():
                ledger = ledger or ledger_in(home)
                jobs = ledger.list_jobs()
                if jobs and jobs[0].entries == 9000:
                    break
            time.sleep(0.02)
        kill_9(first)
        (home / "hurry").touch()
    finally:
        if ledger is not None:
            ledger.close()
        client.close()
    again = shoal_cli(*command, cwd=home, timeout=120)
    assert again.returncode == 0, again.stderr
    results = read_results(home / "shoal-runs" / jobs[0].id)
    assert len(results) == len({r["id"] for r in results}) == 9000


def test_a_damaged_journal_line_fails_alone_and_the_stream_goes_on(home: Path, make_project: MakeProject) -> None:
    from shoal.sources.feeds import append_to_journal

    project = make_project(FRAMES)
    frame = home / "frame.ppm"
    frame.write_bytes(b"P6 1 1 255\n\0\0\0")
    journal = home / "stream.jsonl"
    append_to_journal(journal, [{"uri": str(frame)} for _ in range(3)])
    with journal.open("a") as handle:
        handle.write('{"uri": "/half-writ')  # the server died in the middle of an append
    append_to_journal(journal, [{"uri": str(frame)}, {"uri": str(frame), "meta": "{not json"}, {"uri": str(frame)}])
    append_to_journal(journal, [{"close": True}])

    result = shoal.run(project, [f"shoal+journal://{journal}"], workers=1)
    assert result.counts == {"pending": 0, "succeeded": 5, "failed": 2, "cancelled": 0}
    errors = {e["input"]: e["message"] for e in read_errors(result.out)}
    assert "not a valid journal line" in errors["stream.jsonl:4"]
    assert "meta is not valid JSON" in errors["stream.jsonl:6"]


def test_journal_appends_from_many_processes_at_once_stay_whole_lines(home: Path) -> None:
    journal = home / "stream.jsonl"
    code = (
        "import sys\nfrom pathlib import Path\nfrom shoal.sources.feeds import append_to_journal\n"
        "for k in range(20):\n"
        "    append_to_journal(Path(sys.argv[1]), [{'uri': f'/x/{sys.argv[2]}-{k}-{i}', 'pad': 'y' * 500}"
        " for i in range(100)])\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(journal), str(n)]) for n in range(4)]
    assert [w.wait(60) for w in writers] == [0, 0, 0, 0]
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 * 20 * 100
    assert len({json.loads(line)["uri"] for line in lines}) == len(lines)
