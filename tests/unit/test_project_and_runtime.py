"""Loading a project, its fingerprint, and the worker runtime running items through stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shoal
from shoal.errors import FingerprintMismatchError, PipelineDefinitionError, ProjectError, WorkerStartError
from shoal.project import code_files, fingerprint, load_project, read_config
from shoal.wire import JobSpec
from shoal.worker.runtime import Runtime
from tests.conftest import MakeProject

STAGES = """
import numpy as np
import shoal

pipeline = shoal.Pipeline("stages")

@pipeline.stage()
def measure(item):
    return {"size": len(item.read_bytes()), "vector": np.arange(3)}

@pipeline.stage(batch_size=3)
class Double:
    def setup(self):
        self.factor = 2
    def process(self, items):
        out = []
        for item in items:
            if item.read_text() == "bad":
                out.append(ValueError(f"{item.id} is bad"))
            else:
                out.append({"double": item.result["size"] * self.factor})
        return out

@pipeline.stage()
def save(item):
    item.write_artifact("copy.txt", item.read_text() * item.results["Double"]["double"])
    return None
"""


class _Bound:
    """A runtime and the job whose items it runs."""

    def __init__(self, runtime: Runtime, job: JobSpec) -> None:
        self.runtime, self.job = runtime, job

    def run(self, items: list[dict[str, Any]]) -> Any:
        return self.runtime.run(items, self.job)


def _runtime(project: Path, out: Path, **spec: Any) -> _Bound:
    runtime = Runtime.start(project, spec.get("fingerprint"))
    return _Bound(runtime, JobSpec("job", runtime.fingerprint, str(out)))


def _items(folder: Path, contents: dict[str, str]) -> list[dict[str, Any]]:
    folder.mkdir(exist_ok=True)
    wires = []
    for name, text in contents.items():
        (folder / name).write_text(text)
        wires.append({"id": name.replace(".", "_"), "uri": str(folder / name)})
    return wires


def test_stages_see_earlier_results_and_artifacts_commit_only_on_success(
    make_project: MakeProject, tmp_path: Path
) -> None:
    runtime = _runtime(make_project(STAGES), tmp_path / "out")
    report = runtime.run(_items(tmp_path / "in", {"a.txt": "ab", "b.txt": "bad", "c.txt": "xyz"}))

    ok = {row[0]: json.loads(row[1]) for row in report.ok}
    assert ok == {
        "a_txt": {"size": 2, "vector": [0, 1, 2], "double": 4},
        "c_txt": {"size": 3, "vector": [0, 1, 2], "double": 6},
    }
    (failed,) = report.failed
    assert failed["id"] == "b_txt"
    assert failed["error"]["stage"] == "Double"
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["batch"] == 1  # returned in place: only this item failed
    artifacts = tmp_path / "out" / "artifacts"
    assert (artifacts / "a_txt" / "copy.txt").read_text() == "ab" * 4
    assert not (artifacts / "b_txt").exists()
    assert not any((artifacts / ".staging").iterdir())
    assert set(json.loads(report.ok[0][4])) == {"measure", "Double", "save"}


def test_a_batch_that_raises_fails_every_member_as_one_batch(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        """
        import shoal
        pipeline = shoal.Pipeline("raises")

        @pipeline.stage(batch_size=4)
        def boom(items):
            raise RuntimeError("model exploded")
        """
    )
    report = _runtime(project, tmp_path / "out").run(_items(tmp_path / "in", {"a": "1", "b": "2"}))
    assert [f["error"]["batch"] for f in report.failed] == [2, 2]
    assert report.failed[0]["error"]["message"] == "model exploded"
    assert "RuntimeError: model exploded" in report.failed[0]["error"]["traceback"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return [{}]", "batch stage 'bad' returned 1 results for 2 items"),
        ("return {}", "batch stage 'bad' returned a dict, not a list"),
        ("return [{'x': object()}, {}]", "stage 'bad' returned a result JSON cannot hold as it is: ['x'] is of type"),
        ("return [{'x': float('nan')}, {}]", "['x'] is nan"),
        ("return [{'x': {'y': [1.0, float('-inf')]}}, {}]", "['x']['y'][1] is -inf"),
        ("return [{'e': [0.5] * 383 + [float('nan')]}, {}]", "['e'][383] is nan"),  # a vector, checked at once
        ("return [{'e': [10**400, 2, float('inf')]}, {}]", "['e'][2] is inf"),  # an int past a float's range
        ("import numpy as np\n    return [{'x': np.array([[0.5, np.nan]])}, {}]", "['x'][0][1] is nan"),
        ("import numpy as np\n    return [{'x': np.float32('inf')}, {}]", "['x'] is inf"),
        ("return [{'labels': {'cat', 'dog'}}, {}]", "['labels'] is a set, which JSON would store as a list"),
        ("return [{'by_class': {1: 0.5}}, {}]", "['by_class'] has a key 1 that is not a string"),
        ("return [float('nan'), {}]", "['bad'] is nan"),
    ],
)
def test_results_shoal_cannot_record_fail_clearly(
    make_project: MakeProject, tmp_path: Path, body: str, message: str
) -> None:
    code = "import shoal\npipeline = shoal.Pipeline('bad')\n\n@pipeline.stage(batch_size=2, name='bad')\n"
    project = make_project(f"{code}def bad(items):\n    {body}\n")
    report = _runtime(project, tmp_path / "out").run(_items(tmp_path / "in", {"a": "1", "b": "2"}))
    assert message in report.failed[0]["error"]["message"]
    assert report.failed[0]["error"]["retry"] is False


def test_results_are_recorded_exactly_as_returned(make_project: MakeProject, tmp_path: Path) -> None:
    """What converts without loss is kept; a bare value is stored under its stage's name."""
    project = make_project(
        """
        import datetime, pathlib
        import numpy as np
        import shoal
        pipeline = shoal.Pipeline("exact")

        @pipeline.stage()
        def count(item):
            return 42

        @pipeline.stage()
        def describe(item):
            return {
                "mean": np.float32(0.25), "hist": np.array([1, 2]), "pair": (1, "a"),
                "where": pathlib.Path("/a/b"), "when": datetime.date(2026, 1, 2), "none": None,
            }
        """
    )
    report = _runtime(project, tmp_path / "out").run(_items(tmp_path / "in", {"a": "1"}))
    assert not report.failed
    assert json.loads(report.ok[0][1]) == {
        "count": 42, "mean": 0.25, "hist": [1, 2], "pair": [1, "a"], "where": "/a/b", "when": "2026-01-02", "none": None
    }  # fmt: skip


def test_workers_refuse_code_of_another_version(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(STAGES)
    with pytest.raises(FingerprintMismatchError, match="this run needs version 0000000000000000"):
        _runtime(project, tmp_path / "out", fingerprint="0000000000000000")
    bound = _runtime(project, tmp_path / "out")
    stale = JobSpec("job-9", "1111111111111111", str(tmp_path / "out"))
    with pytest.raises(FingerprintMismatchError, match="job job-9 needs version 1111111111111111"):
        bound.runtime.run(_items(tmp_path / "in", {"a.txt": "x"}), stale)


def test_failing_setup_is_a_start_error_naming_the_stage(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        "import shoal\npipeline = shoal.Pipeline('s')\n\n@pipeline.stage()\nclass Model:\n"
        "    def setup(self):\n        raise OSError('no GPU')\n    def process(self, item):\n        return {}\n"
    )
    with pytest.raises(WorkerStartError, match=r"setup\(\) of stage 'Model' failed .*OSError: no GPU"):
        _runtime(project, tmp_path / "out")


def test_fingerprint_follows_code_not_data(make_project: MakeProject) -> None:
    project = make_project(STAGES, toml="[run]\nretries = 1\n")
    before = fingerprint(project)
    (project / "data").mkdir()
    (project / "data" / "image.jpg").write_bytes(b"data")
    (project / "notes.md").write_text("notes")
    assert fingerprint(project) == before
    (project / "helpers.py").write_text("X = 1\n")
    assert fingerprint(project) != before
    after = fingerprint(project)
    (project / "shoal.toml").write_text("[run]\nretries = 2\n")
    edited = fingerprint(project)
    assert edited != after
    (project / ".#pipeline.py").symlink_to("root@host.1234:1700000000")  # an editor's lock: a dangling link
    assert fingerprint(project) == edited


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("x = 1\n", "defines no pipeline"),
        ("import shoal\na = shoal.Pipeline('a')\nb = shoal.Pipeline('b')\n", "defines several pipelines (a, b)"),
        ("import shoal\npipeline = shoal.Pipeline('empty')\n", "has no stages"),
        ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    ],
)
def test_project_errors_name_the_file_and_the_fix(make_project: MakeProject, code: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_project(make_project(code))


def test_a_project_may_be_named_by_its_pipeline_file(make_project: MakeProject) -> None:
    project = make_project(STAGES)
    assert load_project(project / "pipeline.py").root == load_project(project).root == project.resolve()
    (project / "helpers.py").write_text("X = 1\n")
    with pytest.raises(ProjectError, match=r"helpers.py is a file: pass the project's folder, the one holding"):
        load_project(project / "helpers.py")


def test_stage_declarations_are_checked() -> None:
    pipeline = shoal.Pipeline("checks")
    with pytest.raises(PipelineDefinitionError, match="batch_size must be a positive integer"):
        pipeline.stage(batch_size=0)
    with pytest.raises(PipelineDefinitionError, match="stage name '<lambda>' is not a valid name"):
        pipeline.stage()(lambda item: {})
    pipeline.stage(name="one")(lambda item: {})
    with pytest.raises(PipelineDefinitionError, match="already has a stage named 'one'"):
        pipeline.stage(name="one")(lambda item: {})
    with pytest.raises(PipelineDefinitionError, match="needs a process"):
        pipeline.stage(name="k")(type("K", (), {}))
    with pytest.raises(PipelineDefinitionError, match="pipeline name"):
        shoal.Pipeline("no spaces allowed")


def test_item_reads_and_decodes_with_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(shoal.CorruptInputError, match="file is empty"):
        shoal.Item("e", str(tmp_path / "empty.jpg")).read_image()
    with pytest.raises(shoal.CorruptInputError, match="not a readable image"):
        shoal.Item("t", str(tmp_path / "text.jpg")).read_image()
    with pytest.raises(shoal.FetchError, match="no such file"):
        shoal.Item("m", str(tmp_path / "missing.jpg")).read_bytes()
    with pytest.raises(ValueError, match="must be a relative path"):
        shoal.Item("x", None).artifact_path("../escape.txt")
    assert np.array_equal(np.frombuffer(b"ab", np.uint8), np.array([97, 98], np.uint8))


def test_a_long_lived_worker_keeps_the_scratch_of_its_recent_jobs_only(
    make_project: MakeProject, tmp_path: Path
) -> None:
    from shoal.worker.runtime import KEEP_CONTEXTS

    runtime = Runtime.start(make_project(STAGES))
    items = _items(tmp_path / "in", {"a.txt": "ab"})
    scratches = []
    for n in range(KEEP_CONTEXTS + 3):
        runtime.run([dict(items[0], id=f"a{n}")], JobSpec(f"job-{n}", runtime.fingerprint, str(tmp_path / f"out{n}")))
        scratches.append(runtime._contexts[(f"job-{n}", str(tmp_path / f"out{n}"))].scratch_root)
    assert [s.exists() for s in scratches] == [False] * 3 + [True] * KEEP_CONTEXTS
    runtime.close()
    assert not any(s.exists() for s in scratches)


def test_code_in_a_folder_called_data_counts_and_only_the_inputs_are_skipped(make_project: MakeProject) -> None:
    project = make_project(STAGES, toml='[run]\ninputs = ["images"]\n[project]\nexclude = ["scratch"]\n')
    (project / "pkg" / "data").mkdir(parents=True)
    (project / "pkg" / "data" / "tables.py").write_text("ROWS = 1\n")
    for folder in ("images", "scratch", "venv", "runs/job-1"):
        (project / folder).mkdir(parents=True)
        (project / folder / "helper.py").write_text("X = 1\n")
    (project / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (project / "runs" / "job-1" / "job.json").write_text("{}\n")
    config = read_config(project)
    before = fingerprint(project, config)
    assert project / "pkg" / "data" / "tables.py" in code_files(project, config)

    (project / "pkg" / "data" / "tables.py").write_text("ROWS = 2\n")  # code in a subpackage called data
    assert fingerprint(project, config) != before
    changed = fingerprint(project, config)
    for folder in ("images", "scratch", "venv", "runs/job-1"):  # an input, excluded, a venv, a run folder
        (project / folder / "helper.py").write_text("X = 2\n")
    assert fingerprint(project, config) == changed
