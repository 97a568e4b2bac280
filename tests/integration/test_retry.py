"""`shoal retry JOB`: a job's failed items run again, and only those, after the cause is fixed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.helpers import read_errors, read_results, shoal_cli

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


ROWS = """
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("rows")
LOG = Path({log!r})

@pipeline.stage()
def check(item):
    with LOG.open("a") as log:
        log.write(item.meta["name"] + "\\n")
    if item.meta["value"] == "bad":
        raise ValueError(f"row {{item.meta['name']}} holds a bad value")
    return {{"value": int(item.meta["value"])}}
"""


def test_a_fixed_row_is_read_again_by_retry_and_only_the_fixed_items_run(home: Path, make_project: MakeProject) -> None:
    log = home / "ran.log"
    project = make_project(ROWS.format(log=str(log)))
    table = home / "wines.csv"
    table.write_text("name,value\na,1\nb,bad\nc,3\nd\ne,bad\n")  # d has too few fields: it cannot be read

    first = shoal_cli("run", str(project), "-i", str(table), "--retries", "0", cwd=home)
    assert first.returncode == 1, first.stderr
    assert "completed_with_errors" in first.stdout  # 2 of 5 succeeded: not "failed"
    job = json.loads(next((home / "shoal-runs").glob("rows-*/job.json")).read_text())["job_id"]
    assert shoal_cli("report", job, cwd=home).returncode == 0  # it printed the report: that succeeded
    assert "completed_with_errors" in shoal_cli("jobs", cwd=home).stdout

    table.write_text("name,value\na,1\nb,2\nc,3\nd,4\ne,bad\n")  # b and d fixed; e not yet
    log.write_text("")
    kept = shoal_cli("retry", job, "--same-inputs", cwd=home)  # the rows as first read: b fails again
    assert kept.returncode == 1, kept.stderr
    assert sorted(log.read_text().split()) == ["b", "e"]  # d was never read: nothing of it can run

    log.write_text("")
    again = shoal_cli("retry", job, cwd=home)
    assert again.returncode == 1, again.stderr  # e still holds a bad value
    assert f"re-read the inputs of job {job}: 2 failed items read differently now" in again.stderr
    assert sorted(log.read_text().split()) == ["b", "d", "e"]  # only the failed items ran, none that succeeded
    results = {r["result"]["value"] if r["result"] else None for r in read_results(home / "shoal-runs" / job)}
    assert results == {1, 2, 3, 4}
    assert "5 total, 4 succeeded, 1 failed" in again.stdout

    table.write_text("name,value\na,1\nb,2\nc,3\nd,4\n")  # e removed: the inputs end before it
    log.write_text("")
    last = shoal_cli("retry", job, cwd=home)
    assert last.returncode == 1  # e keeps the row it read and fails again
    assert "0 failed items read differently now" in last.stderr
    assert log.read_text().split() == ["e"]


def test_a_row_still_unreadable_is_not_run_and_says_why(home: Path, make_project: MakeProject) -> None:
    log = home / "ran.log"
    project = make_project(ROWS.format(log=str(log)))
    table = home / "wines.csv"
    table.write_text('name,value\na,1\nb,"2\n')  # an unterminated quote
    first = shoal_cli("run", str(project), "-i", str(table), cwd=home)
    assert first.returncode == 1, first.stderr
    job = json.loads(next((home / "shoal-runs").glob("rows-*/job.json")).read_text())["job_id"]

    again = shoal_cli("retry", job, cwd=home)
    assert again.returncode == 2
    assert f"job {job} has no failed items that can run again: see its errors.csv" in again.stderr
    assert log.read_text().split() == ["a"]
    assert shoal_cli("retry", job, "--same-inputs", cwd=home).returncode == 2


def test_a_job_where_nothing_succeeded_is_failed(home: Path, make_project: MakeProject) -> None:
    project = make_project(ROWS.format(log=str(home / "ran.log")))
    table = home / "wines.csv"
    table.write_text("name,value\na,bad\nb,bad\n")
    result = shoal_cli("run", str(project), "-i", str(table), "--retries", "0", cwd=home)
    assert result.returncode == 1
    assert "completed_with_errors" not in result.stdout
    assert "failed" in next(line for line in result.stdout.splitlines() if line.strip().startswith("state"))


FILES = """
import shoal

pipeline = shoal.Pipeline("files")

@pipeline.stage()
def read(item):
    return {"text": item.read_text().strip(), "name": item.meta["name"]}
"""


def test_rows_removed_since_are_never_run_twice(home: Path, make_project: MakeProject) -> None:
    log = home / "ran.log"
    project = make_project(ROWS.format(log=str(log)))
    table = home / "wines.csv"
    table.write_text("name,value\na,1\nb\nc,3\nd,bad\n")  # b cannot be read; d fails in its stage
    assert shoal_cli("run", str(project), "-i", str(table), "--retries", "0", cwd=home).returncode == 1
    job = json.loads(next((home / "shoal-runs").glob("rows-*/job.json")).read_text())["job_id"]

    table.write_text("name,value\na,1\nc,3\nd,bad\n")  # b's line removed: c and d move up a line
    log.write_text("")
    again = shoal_cli("retry", job, cwd=home)
    assert again.returncode == 1, again.stderr
    assert log.read_text().split() == ["d"]  # c, done already, did not run again in b's place
    assert len(read_results(home / "shoal-runs" / job)) == 2  # a and c, once each
    assert {row["input"] for row in read_errors(home / "shoal-runs" / job)} == {"wines.csv:3", "wines.csv:5"}


def test_a_row_broken_since_fails_as_its_row_not_as_its_stage(home: Path, make_project: MakeProject) -> None:
    log = home / "ran.log"
    project = make_project(ROWS.format(log=str(log)))
    table = home / "wines.csv"
    table.write_text("name,value\na,1\nd,bad\n")
    assert shoal_cli("run", str(project), "-i", str(table), "--retries", "0", cwd=home).returncode == 1
    job = json.loads(next((home / "shoal-runs").glob("rows-*/job.json")).read_text())["job_id"]

    table.write_text("name,value\na,1\nd\n")  # d broken in place while being edited
    log.write_text("")
    again = shoal_cli("retry", job, cwd=home)
    assert again.returncode == 2, again.stderr  # nothing failed can run
    assert log.read_text() == ""
    (error,) = read_errors(home / "shoal-runs" / job)
    assert (error["stage"], error["error_type"]) == ("input", "InputError")  # not the old ValueError
    assert "row has 1 fields, the header has 2" in error["message"]


def test_a_row_whose_file_path_was_fixed_runs_with_the_fixed_file(home: Path, make_project: MakeProject) -> None:
    project = make_project(FILES)
    (home / "found.txt").write_text("hello\n")
    table = home / "files.csv"
    table.write_text("name,path\none,missing.txt\n")
    assert shoal_cli("run", str(project), "-i", str(table), "--retries", "0", cwd=home).returncode == 1
    job = json.loads(next((home / "shoal-runs").glob("files-*/job.json")).read_text())["job_id"]

    table.write_text("name,path\none,found.txt\n")  # the path was wrong: fixed (and so is its id)
    again = shoal_cli("retry", job, cwd=home)
    assert again.returncode == 0, again.stderr
    assert "1 failed item reads differently now" in again.stderr
    (result,) = read_results(home / "shoal-runs" / job)
    assert result["result"] == {"text": "hello", "name": "one"}
    assert result["input"] == str(home / "found.txt")
