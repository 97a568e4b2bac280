"""An existing per-file script, unchanged: `shoal run analyse.py:main --input files/` runs its
function on each file, locally, on project-less Celery workers, and again on `shoal retry`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.bundles import KEY_ENV
from shoal.errors import ProjectError
from shoal.project import load_project
from tests.engines import EngineUnderTest, engine_for
from tests.helpers import read_errors, read_results, shoal_cli

pytestmark = pytest.mark.integration

SCRIPT = """
import json, sys

def main(path):
    values = [float(line) for line in open(path) if line.strip()]
    return {"n": len(values), "mean": sum(values) / len(values)}

if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
"""


def _script(home: Path) -> tuple[Path, Path]:
    folder = home / "solar"
    (folder / "files").mkdir(parents=True)
    (folder / "analyse.py").write_text(SCRIPT)
    for site in (1, 2, 3):
        (folder / "files" / f"site{site}.csv").write_text("".join(f"{v}\n" for v in range(1, site * 10 + 1)))
    (folder / "files" / "broken.csv").write_text("not a number\n")
    return folder / "analyse.py", folder / "files"


def test_a_script_s_function_runs_on_each_file_and_a_retry_reloads_it(home: Path) -> None:
    script, files = _script(home)
    out = home / "out"
    done = shoal_cli("run", f"{script}:main", "--input", str(files), "--out", str(out), "--retries", "0", cwd=home)
    assert done.returncode == 1, done.stderr  # one file is broken: exit 1, the others done
    results = {Path(r["input"]).name: r["result"] for r in read_results(out)}
    assert results == {f"site{s}.csv": {"n": s * 10, "mean": (s * 10 + 1) / 2} for s in (1, 2, 3)}
    (error,) = read_errors(out)
    assert (error["stage"], error["error_type"]) == ("main", "ValueError")

    (files / "broken.csv").write_text("4\n6\n")  # mended: a retry runs it, with the script loaded again
    again = shoal_cli("retry", str(out), cwd=home)
    assert again.returncode == 0, again.stderr
    assert {Path(r["input"]).name: r["result"] for r in read_results(out)}["broken.csv"] == {"n": 2, "mean": 5.0}


def test_a_script_path_or_function_that_is_not_there_is_named(home: Path) -> None:
    script, _ = _script(home)
    project = load_project(f"{script}:main")
    assert (project.pipeline.name, [s.name for s in project.pipeline.stages]) == ("analyse", ["main"])
    assert project.spec == f"{script}:main"
    with pytest.raises(ProjectError, match="defines no function 'mian' to run on each input file"):
        load_project(f"{script}:mian")
    with pytest.raises(ProjectError, match=r"no script at .*nowhere\.py: expected FILE\.py:FUNCTION"):
        load_project(f"{home}/nowhere.py:main")


@pytest.fixture
def cluster(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineUnderTest]:
    monkeypatch.setenv(KEY_ENV, "cluster-key-for-the-tests-0123456789")
    under_test = engine_for("celery-redis", home)
    yield under_test
    under_test.stop_workers()


def test_a_script_runs_on_workers_without_a_project(cluster: EngineUnderTest, home: Path) -> None:
    script, files = _script(home)
    (files / "broken.csv").unlink()
    cluster.start_workers(None, 1, extra=("--cache", str(home / "cache")))
    args = ["--input", str(files), "--broker", cluster.broker, "--queue", cluster.queue, "--out", str(home / "out")]
    done = shoal_cli("run", f"{script}:main", *args, cwd=home)
    assert done.returncode == 0, done.stderr
    assert sorted(r["result"]["n"] for r in read_results(home / "out")) == [10, 20, 30]
