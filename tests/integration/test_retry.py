"""`shoal retry JOB`: a job's failed items run again, and only those, after the cause is fixed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.helpers import read_results, shoal_cli

pytestmark = pytest.mark.integration

PICKY = """
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("picky")
LOG = Path({log!r})

@pipeline.stage()
def check(item):
    text = item.read_text().strip()
    with LOG.open("a") as log:
        log.write(item.input.rsplit("/", 1)[-1] + "\\n")
    if text == "bad":
        raise ValueError(f"{{item.input}} holds a bad row")
    return {{"text": text}}
"""


def _job_id(home: Path) -> str:
    return json.loads(next((home / "shoal-runs").glob("picky-*/job.json")).read_text())["job_id"]


def test_retry_runs_only_the_failed_items_and_records_them_on_the_same_items(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log = home / "ran.log"
    project = make_project(PICKY.format(log=str(log)))
    listing = inputs(6)
    folder = listing.parent / "items-files"
    for name in ("item-0004.txt", "item-0005.txt"):
        (folder / name).write_text("bad\n")

    first = shoal_cli("run", str(project), "-i", str(listing), "--retries", "1", cwd=home)
    assert first.returncode == 1, first.stderr
    job = _job_id(home)
    assert sorted(log.read_text().split()).count("item-0004.txt") == 2  # its first try and one retry
    log.write_text("")

    (folder / "item-0004.txt").write_text("fixed\n")  # the cause of one failure is fixed
    again = shoal_cli("retry", job, cwd=home)
    assert again.returncode == 1, again.stderr  # item 5 still fails
    assert sorted(log.read_text().split()) == ["item-0004.txt", "item-0005.txt", "item-0005.txt"]  # its retries again
    assert "6 total, 5 succeeded, 1 failed" in again.stdout

    (folder / "item-0005.txt").write_text("fixed too\n")
    log.write_text("")
    last = shoal_cli("retry", job, cwd=home)
    assert last.returncode == 0, last.stderr
    assert log.read_text().split() == ["item-0005.txt"]
    out = home / "shoal-runs" / job
    results = {r["input"].rsplit("/", 1)[-1]: r for r in read_results(out)}
    assert len(read_results(out)) == 6  # every item once, none twice
    assert results["item-0004.txt"]["result"] == {"text": "fixed"}
    assert results["item-0005.txt"]["attempts"] == 5  # 2 + 2 + 1, recorded on the same item
    assert results["item-0000.txt"]["attempts"] == 1
    assert (out / "errors.csv").read_text().count("\n") == 1  # the header alone
    listed = shoal_cli("jobs", cwd=home).stdout
    assert job in listed
    assert "succeeded" in listed
    assert len([line for line in listed.splitlines() if "picky-" in line]) == 1  # the same job, not a new one

    nothing = shoal_cli("retry", job, cwd=home)
    assert nothing.returncode == 2
    assert f"job {job} has no failed items to retry" in nothing.stderr


def test_retry_uses_the_current_code_unless_told_to_keep_it(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log = home / "ran.log"
    project = make_project(PICKY.format(log=str(log)))
    listing = inputs(3)
    (listing.parent / "items-files" / "item-0001.txt").write_text("bad\n")
    assert shoal_cli("run", str(project), "-i", str(listing), "--retries", "0", cwd=home).returncode == 1
    job = _job_id(home)

    fixed = (project / "pipeline.py").read_text().replace('if text == "bad":', 'if text == "never":')
    (project / "pipeline.py").write_text(fixed)  # the bug is in the code: fix the code
    refused = shoal_cli("retry", job, "--same-code", cwd=home)
    assert refused.returncode == 2
    assert "changed since job" in refused.stderr
    assert "retry without --same-code" in refused.stderr

    retried = shoal_cli("retry", str(home / "shoal-runs" / job), cwd=home)  # by its run folder, too
    assert retried.returncode == 0, retried.stderr
    results = {r["input"].rsplit("/", 1)[-1]: r["result"] for r in read_results(home / "shoal-runs" / job)}
    assert results == {"item-0000.txt": {"text": "0"}, "item-0001.txt": {"text": "bad"}, "item-0002.txt": {"text": "2"}}


def test_retry_of_a_job_that_does_not_exist_is_one_line(home: Path) -> None:
    result = shoal_cli("retry", "no-such-job", cwd=home)
    assert result.returncode in (1, 2)
    assert result.stderr.count("\n") == 1
    assert "no job 'no-such-job'" in result.stderr
