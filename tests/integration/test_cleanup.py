"""`shoal jobs rm` and `shoal jobs prune`: a job's rows and its run folder go together, and only
what is the job's own; a running job is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.store import Ledger
from tests.conftest import MakeProject
from tests.helpers import ECHO, shoal_cli

pytestmark = pytest.mark.integration


def _run(home: Path, project: Path, listing: Path) -> Path:
    """Run a job; returns its run folder."""
    before = set((home / "shoal-runs").glob("echo-*"))
    result = shoal_cli("run", str(project), "-i", str(listing), cwd=home)
    assert result.returncode == 0, result.stderr
    (made,) = set((home / "shoal-runs").glob("echo-*")) - before
    return made


def _items(home: Path, job_id: str) -> int:
    with sqlite3.connect(home / "shoal-runs" / "ledger.db") as db:
        (num,) = db.execute("select num from jobs where id = ?", (job_id,)).fetchone() or (None,)
        return 0 if num is None else db.execute("select count(*) from items where job = ?", (num,)).fetchone()[0]


def test_rm_removes_a_jobs_rows_and_run_folder_and_nothing_else(
    home: Path, make_project: MakeProject, inputs: Callable[..., Path]
) -> None:
    project = make_project(ECHO)
    first = _run(home, project, inputs(3))
    second = _run(home, project, inputs(4, name="more"))
    first_id, second_id = (json.loads((f / "job.json").read_text())["job_id"] for f in (first, second))
    assert _items(home, first_id) == 3

    removed = shoal_cli("jobs", "rm", first_id, cwd=home)
    assert removed.returncode == 0, removed.stderr
    assert f"removed job {first_id} (succeeded): {first}" in removed.stdout
    assert not first.exists()
    assert _items(home, first_id) == 0
    listed = shoal_cli("jobs", cwd=home).stdout
    assert first_id not in listed
    assert second_id in listed
    assert (second / "results.jsonl").is_file()
    assert _items(home, second_id) == 4

    by_folder = shoal_cli("jobs", "rm", str(second), cwd=home)  # a run folder names its job
    assert by_folder.returncode == 0, by_folder.stderr
    assert not second.exists()
    assert shoal_cli("jobs", "rm", first_id, cwd=home).returncode == 1  # gone already: says so
    again = shoal_cli("run", str(project), "-i", str(inputs(3)), cwd=home)
    assert "already ran" not in again.stderr  # a removed job runs afresh
    assert again.returncode == 0


def test_a_running_job_is_refused_and_a_folder_of_another_job_is_kept(
    home: Path, make_project: MakeProject, inputs: Callable[..., Path]
) -> None:
    out = _run(home, make_project(ECHO), inputs(2))
    job_id = json.loads((out / "job.json").read_text())["job_id"]
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    try:
        ledger.claim(job_id, f"{os.uname().nodename}:{os.getpid()}:test")  # this live process runs it
        refused = shoal_cli("jobs", "rm", job_id, cwd=home)
        assert refused.returncode == 2
        assert f"job {job_id} is running (held by" in refused.stderr
        assert out.is_dir()
        assert _items(home, job_id) == 2
        ledger.set_state(job_id, "succeeded", finished=True)  # it ended
    finally:
        ledger.close()

    (out / "job.json").write_text(json.dumps({"job_id": "someone-else"}))  # the folder was taken over
    removed = shoal_cli("jobs", "rm", job_id, cwd=home)
    assert removed.returncode == 0, removed.stderr
    assert f"kept {out} (its job.json names another job)" in removed.stdout
    assert out.is_dir()
    assert _items(home, job_id) == 0


def test_prune_removes_only_jobs_unchanged_for_longer_than_asked(
    home: Path, make_project: MakeProject, inputs: Callable[..., Path]
) -> None:
    project = make_project(ECHO)
    old = _run(home, project, inputs(2))
    new = _run(home, project, inputs(2, name="fresh"))
    old_id = json.loads((old / "job.json").read_text())["job_id"]
    with sqlite3.connect(home / "shoal-runs" / "ledger.db") as db:  # as if it ran 40 days ago
        db.execute("update jobs set updated_at = ? where id = ?", (time.time() - 40 * 86400, old_id))

    pruned = shoal_cli("jobs", "prune", "--older-than", "30d", cwd=home)
    assert pruned.returncode == 0, pruned.stderr
    assert "removed 1 job older than 30d" in pruned.stdout
    assert not old.exists()
    assert new.is_dir()
    assert old_id not in shoal_cli("jobs", cwd=home).stdout

    wrong = shoal_cli("jobs", "prune", "--older-than", "a month", cwd=home)
    assert wrong.returncode == 2
    assert "give a number and a unit, as in 30d" in wrong.stderr
