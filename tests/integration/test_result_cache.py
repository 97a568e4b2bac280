"""cache=True across jobs: the second job over repeated content reuses results, and the report
counts the hits; on Celery workers the cache lives in the Redis broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.engines import EngineUnderTest, engine_for
from tests.helpers import read_results, shoal_cli

pytestmark = pytest.mark.integration

PIPELINE = """
import os, shoal
pipeline = shoal.Pipeline("words")

@pipeline.stage(cache=True)
def count(item):
    return {"words": len(item.read_text().split()), "pid": os.getpid()}
"""


def _inputs(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.txt").write_text(" ".join(["w"] * (len(name) + 1)))
    return folder


def _report(out: Path) -> dict[str, object]:
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    return report


def test_a_second_job_reuses_what_the_first_computed_and_the_report_counts_it(
    home: Path, make_project: MakeProject
) -> None:
    project = make_project(PIPELINE)
    first = shoal_cli("run", str(project), "--input", str(_inputs(home / "a", ["x", "yy", "zzz"])), "--out", "o1")
    assert first.returncode == 0, first.stderr
    assert "cache hits" not in (home / "o1" / "performance.txt").read_text()

    again = _inputs(home / "b", ["x", "yy", "zzz", "quad"])  # same bytes under other paths, and one new
    second = shoal_cli("run", str(project), "--input", str(again), "--out", "o2")
    assert second.returncode == 0, second.stderr
    before = {Path(r["input"]).name: r["result"] for r in read_results(home / "o1")}
    after = {Path(r["input"]).name: r["result"] for r in read_results(home / "o2")}
    assert {k: after[k] for k in before} == before  # the very records, pid included: not computed again
    assert after["quad.txt"]["words"] == 5
    assert _report(home / "o2")["cache_hits"] == {"count": 3}
    assert "cache hits (results reused, not computed): count 3 of 4" in (home / "o2" / "performance.txt").read_text()


@pytest.fixture
def cluster(home: Path) -> Iterator[EngineUnderTest]:
    under_test = engine_for("celery-redis", home)
    yield under_test
    under_test.stop_workers()


def test_on_celery_workers_the_cache_is_the_redis_broker_s(
    cluster: EngineUnderTest, home: Path, make_project: MakeProject
) -> None:
    project = make_project(PIPELINE + f"# {uuid.uuid4()}: a version Redis has not seen\n")
    cluster.start_workers(project, 1)
    args = ["--broker", cluster.broker, "--queue", cluster.queue]
    first = shoal_cli("run", str(project), "--input", str(_inputs(home / "a", ["x", "yy"])), "--out", "o1", *args)
    assert first.returncode == 0, first.stderr
    assert _report(home / "o1")["cache_hits"] == {}
    second = shoal_cli("run", str(project), "--input", str(_inputs(home / "b", ["yy", "x"])), "--out", "o2", *args)
    assert second.returncode == 0, second.stderr
    assert _report(home / "o2")["cache_hits"] == {"count": 2}
    assert not (home / "shoal-runs" / "cache").exists()  # kept in Redis, where every worker host reaches it
