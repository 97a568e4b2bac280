"""Size-aware batches (sort_by) and the content cache (cache=True), inside one worker's runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.errors import PipelineDefinitionError
from shoal.wire import JobSpec
from shoal.worker.runtime import Runtime
from tests.conftest import MakeProject

SORTED = """
import os, shoal
pipeline = shoal.Pipeline("sorted")
@pipeline.stage(batch_size=4, sort_by=lambda item: len(item.read_text()))
def embed(items):
    lengths = [len(item.read_text()) for item in items]
    with open(os.environ["BATCH_LOG"], "a") as log:
        log.write(",".join(map(str, lengths)) + "\\n")
    return [{"length": n, "padded_to": max(lengths)} for n in lengths]
"""

CACHED = """
import os, shoal
pipeline = shoal.Pipeline("cached")
@pipeline.stage(cache=True)
def expensive(item):
    with open(os.environ["CALL_LOG"], "a") as log:
        log.write(item.id + "\\n")
    text = item.read_text()
    if text == "bad":
        raise ValueError("cannot read " + text)
    return {"words": len(text.split())}

@pipeline.stage()
def after(item):
    return {"twice": item.result["words"] * 2}
"""


def _job(runtime: Runtime, out: Path, cache: Path | None) -> JobSpec:
    return JobSpec("job", runtime.fingerprint, str(out), cache=str(cache) if cache else None)


def _items(folder: Path, texts: dict[str, str]) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    return [{"id": name, "uri": str(folder / name)} for name in texts]


def test_sort_by_cuts_batches_of_similar_cost_from_the_window_and_results_stay_per_item(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "batches.txt"
    monkeypatch.setenv("BATCH_LOG", str(log))
    runtime = Runtime.start(make_project(SORTED))
    assert runtime.project.pipeline.group_size == 16  # a window of 4 batches is read ahead
    lengths = [9, 1, 14, 3, 12, 2, 7, 16, 5, 10, 4, 15, 6, 11, 8, 13]
    texts = {f"t{n:02d}": "x" * length for n, length in enumerate(lengths)}
    report = runtime.run(_items(tmp_path / "in", texts), _job(runtime, tmp_path / "out", None))

    batches = [[int(v) for v in line.split(",")] for line in log.read_text().splitlines()]
    assert batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    results = {row[0]: json.loads(row[1]) for row in report.ok}
    assert {i: r["length"] for i, r in results.items()} == {f"t{n:02d}": n_ for n, n_ in enumerate(lengths)}
    padding = sum(r["padded_to"] - r["length"] for r in results.values())
    assert padding == 4 * 6  # sorted: 6 per batch; cut in input order it would be 69
    assert not report.failed


def test_a_cost_that_cannot_be_worked_out_fails_that_item_alone(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_LOG", str(tmp_path / "batches.txt"))
    runtime = Runtime.start(make_project(SORTED))
    items = _items(tmp_path / "in", {"a": "aa", "b": "b"})
    items.append({"id": "gone", "uri": str(tmp_path / "in" / "gone")})
    report = runtime.run(items, _job(runtime, tmp_path / "out", None))
    assert sorted(row[0] for row in report.ok) == ["a", "b"]
    (failed,) = report.failed
    assert (failed["id"], failed["error"]["stage"], failed["error"]["type"]) == ("gone", "embed", "FetchError")


def test_a_cached_stage_runs_once_per_content_and_version_and_not_for_failures(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CALL_LOG", str(calls))
    project = make_project(CACHED)
    cache = tmp_path / "cache"
    runtime = Runtime.start(project)
    texts = {"a": "one two", "b": "three", "copy-of-a": "one two", "bad": "bad"}
    first = runtime.run(_items(tmp_path / "in", texts), _job(runtime, tmp_path / "out1", cache))
    assert calls.read_text().split() == ["a", "b", "copy-of-a", "bad"]  # nothing cached yet within a group

    calls.write_text("")
    texts = {"a2": "one two", "b2": "three", "new": "four five six", "bad2": "bad"}
    second = runtime.run(_items(tmp_path / "in2", texts), _job(runtime, tmp_path / "out2", cache))
    assert calls.read_text().split() == ["new", "bad2"]  # the same bytes are not computed again; failures are
    results = {row[0]: json.loads(row[1]) for row in second.ok}
    assert results == {
        "a2": {"words": 2, "twice": 4},
        "b2": {"words": 1, "twice": 2},
        "new": {"words": 3, "twice": 6},
    }
    hits = {row[0]: json.loads(row[4]).get("cached:expensive") for row in second.ok}
    assert hits == {"a2": 1.0, "b2": 1.0, "new": None}
    assert {f["id"] for f in first.failed} == {"bad"}
    assert {f["id"] for f in second.failed} == {"bad2"}

    calls.write_text("")
    (project / "pipeline.py").write_text((project / "pipeline.py").read_text() + "\n# edited\n")
    edited = Runtime.start(project)  # another version of the code: nothing it has not computed itself
    edited.run(_items(tmp_path / "in3", {"a3": "one two"}), _job(edited, tmp_path / "out3", cache))
    assert calls.read_text().split() == ["a3"]


def test_without_a_store_a_cached_stage_simply_runs(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CALL_LOG", str(calls))
    runtime = Runtime.start(make_project(CACHED))
    for run in ("1", "2"):
        report = runtime.run(_items(tmp_path / run, {"a": "x y"}), _job(runtime, tmp_path / f"o{run}", None))
        assert json.loads(report.ok[0][1]) == {"words": 2, "twice": 4}
    assert calls.read_text().split() == ["a", "a"]


def test_the_options_are_checked() -> None:
    pipeline = shoal.Pipeline("p")
    with pytest.raises(PipelineDefinitionError, match="give the stage a batch_size too"):
        pipeline.stage(sort_by=len)
    with pytest.raises(PipelineDefinitionError, match="sort_by must be a function"):
        pipeline.stage(batch_size=2, sort_by=3)  # type: ignore[arg-type]
    with pytest.raises(PipelineDefinitionError, match=r"window \(2\) must hold at least one batch \(8\)"):
        pipeline.stage(batch_size=8, sort_by=len, window=2)
    with pytest.raises(PipelineDefinitionError, match="cache must be True, False or a version name"):
        pipeline.stage(cache="")
