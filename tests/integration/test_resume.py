"""Killing `shoal run` (kill -9, Ctrl-C) and running the same command again: it resumes, redoes
no item already recorded as succeeded, and the results hold every item exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.helpers import SLOW, kill_9, ledger_in, read_results, shoal_cli, start_cli, succeeded_when

pytestmark = pytest.mark.integration


def test_kill_9_then_same_command_resumes_without_redoing_work(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log = home / "processed.log"
    project = make_project(SLOW.format(log=str(log), delay=0.05))
    listing = inputs(80)
    command = ("run", str(project), "--input", str(listing), "--workers", "2")

    first = start_cli(*command, cwd=home)
    job_id, done_before_kill = succeeded_when(home, 20)
    kill_9(first)
    time.sleep(0.5)  # the kernel kills the orphaned workers (parent-death signal)
    assert subprocess.run(["pgrep", "-f", f"shoal-{job_id}"], capture_output=True).returncode != 0

    second = shoal_cli(*command, cwd=home)
    assert second.returncode == 0, second.stderr

    processed = Counter(log.read_text().split())
    assert all(processed[item] == 1 for item in done_before_kill), "a recorded success was redone"
    assert set(processed) == {r["id"] for r in read_results(home / "shoal-runs" / job_id)}
    results = read_results(home / "shoal-runs" / job_id)
    assert len(results) == 80
    assert len({r["id"] for r in results}) == 80

    # the same command again reports the finished job instead of redoing it
    third = shoal_cli(*command, cwd=home)
    assert third.returncode == 0
    assert "already ran" in third.stderr
    assert sum(Counter(log.read_text().split()).values()) == sum(processed.values())

    # --new forces a fresh job over the same inputs
    fresh = shoal_cli(*command, "--new", cwd=home)
    assert fresh.returncode == 0
    assert sum(Counter(log.read_text().split()).values()) == sum(processed.values()) + 80

    # changed pipeline code makes a new job
    (project / "pipeline.py").write_text((project / "pipeline.py").read_text() + "\n# changed\n")
    changed = shoal_cli(*command, cwd=home)
    assert changed.returncode == 0
    ledger = ledger_in(home)
    assert len({job.fingerprint for job in ledger.list_jobs()}) == 2
    assert len(ledger.list_jobs()) == 3
    ledger.close()


def test_resume_finds_the_job_with_or_without_out(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log = home / "processed.log"
    project = make_project(SLOW.format(log=str(log), delay=0.05))
    command = ("run", str(project), "-i", str(inputs(60)), "-w", "2")
    out = home / "elsewhere"

    first = start_cli(*command, "--out", str(out), cwd=home)
    succeeded_when(home, 10)
    kill_9(first)

    wrong = shoal_cli(*command, "--out", str(home / "other"), cwd=home)
    assert wrong.returncode == 2
    assert f"--out {out}" in wrong.stderr  # says how to resume it

    again = shoal_cli(*command, cwd=home)  # no --out: the unfinished job still writes to `out`
    assert again.returncode == 0, again.stderr
    assert len(read_results(out)) == 60
    assert not (home / "other").exists()


def test_ctrl_c_settles_writes_a_partial_report_and_resumes(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log = home / "processed.log"
    project = make_project(SLOW.format(log=str(log), delay=0.3))
    command = ("run", str(project), "-i", str(inputs(40)), "-w", "2")

    running = start_cli(*command, cwd=home)
    job_id, _ = succeeded_when(home, 4)
    interrupted_at = time.monotonic()
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 130, stderr
    assert time.monotonic() - interrupted_at < 10
    assert "run the same command again to resume" in stderr

    out = home / "shoal-runs" / job_id
    report = json.loads((out / "report.json").read_text())
    assert report["job"]["state"] == "interrupted"
    partial = read_results(out)
    assert 4 <= len(partial) < 40
    assert report["items"]["succeeded"] == len(partial)

    resumed = shoal_cli(*command, cwd=home)
    assert resumed.returncode == 0, resumed.stderr
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(set(r["id"] for r in results))
    assert len(results) == 40
    assert {r["id"] for r in partial} <= {r["id"] for r in results}


CHEAP = """
import shoal
pipeline = shoal.Pipeline("cheap")

@pipeline.stage()
def name(item):
    return {"length": len(item.id)}
"""


def test_a_resumed_job_reads_its_inputs_from_where_its_recorded_entries_end(
    home: Path, make_project: MakeProject
) -> None:
    """The job's checkpoint says where in the list its recorded entries end: the next run seeks
    there. Lines before it are spoilt after the kill: read again, they would fail."""
    project = make_project(CHEAP)
    listing = home / "paths.txt"
    listing.write_text("".join(f"/nowhere/folder/file-{i:07d}.txt\n" for i in range(100_000)))
    command = ("run", str(project), "--input", str(listing), "--workers", "2")

    first = start_cli(*command, cwd=home)
    deadline = time.monotonic() + 60
    job = None
    while job is None or job.entries < 10_000:
        assert time.monotonic() < deadline, "the job never recorded 10,000 entries"
        time.sleep(0.02)
        if (home / "shoal-runs" / "ledger.db").exists():
            ledger = ledger_in(home)
            found = ledger.list_jobs()
            ledger.close()
            job = found[0] if found else None
    kill_9(first)
    ledger = ledger_in(home)
    job = ledger.get_job(job.id)
    ledger.close()
    assert not job.ingested
    assert job.checkpoint is not None
    offset = json.loads(job.checkpoint)["at"][1][0]
    assert offset > 0
    with listing.open("r+b") as handle:  # every line before the checkpoint made unreadable
        spoilt = bytes(b if b == ord("\n") else 0xFF for b in handle.read(offset))
        handle.seek(0)
        handle.write(spoilt)

    second = shoal_cli(*command, cwd=home)
    assert second.returncode == 0, second.stderr
    results = read_results(home / "shoal-runs" / job.id)
    assert len(results) == len({r["id"] for r in results}) == 100_000
