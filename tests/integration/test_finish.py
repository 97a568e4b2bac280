"""@pipeline.finish: called once a job's items have all run, with the run folder and every item in
input order; not again for a finished job; a retry calls it again with the mended items; one that
raises is reported without changing the job's outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.helpers import shoal_cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

PIPELINE = """
import json
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("finishing")

@pipeline.stage()
def square(item):
    n = int(item.read_text())
    if n == 3 and not Path(item.path).with_name("mended").exists():
        raise ValueError("three is not allowed")
    return {"square": n * n}

@pipeline.finish
def table(out, items):
    rows = [[i["id"], i["status"], (i["result"] or {}).get("square"), i["error_type"]] for i in items]
    with open(out / "finished.jsonl", "a") as handle:
        handle.write(json.dumps(rows) + "\\n")
"""


def _calls(out: Path) -> list[list[list[object]]]:
    return [json.loads(line) for line in (out / "finished.jsonl").read_text().splitlines()]


def test_finish_gets_every_item_in_input_order_once_and_again_after_a_retry(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    project, listing = make_project(PIPELINE), inputs(6)
    out = home / "out"
    command = ("run", str(project), "--input", str(listing), "--out", str(out), "--workers", "2", "--retries", "0")
    first = shoal_cli(*command, cwd=home)
    assert first.returncode == 1, first.stderr  # one item failed: the job completed with errors
    (call,) = _calls(out)
    assert [str(row[0]).rsplit("-", 1)[0] for row in call] == [f"item-{i:04d}.txt" for i in range(6)]
    assert [(row[1], row[2], row[3]) for row in call] == [
        ("succeeded", 0, None), ("succeeded", 1, None), ("succeeded", 4, None),
        ("failed", None, "ValueError"), ("succeeded", 16, None), ("succeeded", 25, None),
    ]  # fmt: skip

    again = shoal_cli(*command, cwd=home)  # a finished job is reported, not run: no second call
    assert again.returncode == 1, again.stderr
    assert len(_calls(out)) == 1

    (listing.parent / f"{listing.stem}-files" / "mended").write_text("")
    retried = shoal_cli("retry", str(out), cwd=home)
    assert retried.returncode == 0, retried.stderr
    assert [row[1:3] for row in _calls(out)[1]] == [["succeeded", n * n] for n in range(6)]


def test_a_finish_function_that_raises_is_reported_and_the_job_keeps_its_outcome(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    code = PIPELINE.replace("    rows = [", "    raise RuntimeError('the join broke')\n    rows = [")
    project, listing = make_project(code), inputs(3)
    out = home / "out"
    done = shoal_cli("run", str(project), "--input", str(listing), "--out", str(out), cwd=home)
    assert done.returncode == 0, done.stderr
    assert "finish function table failed: RuntimeError: the join broke" in done.stderr
    assert "RuntimeError: the join broke" in (out / "logs" / "finish.log").read_text()
    assert json.loads((out / "report.json").read_text())["items"]["succeeded"] == 3
