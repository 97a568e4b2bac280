"""An existing per-file script, unchanged: `shoal run analyse.py:main --input files/` runs its
function on each file, locally, on project-less Celery workers, and again on `shoal retry`."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.bundles import KEY_ENV
from shoal.errors import ProjectError
from shoal.project import load_project
from tests.engines import EngineUnderTest, engine_for
from tests.helpers import demo_wheel, read_errors, read_results, shoal_cli

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


USES_A_PACKAGE = """
import shoaldemo  # installed from the script's requirements.txt, never into shoal's environment

def main(path):
    return {"value": shoaldemo.VALUE, "from": shoaldemo.__file__}
"""


def test_a_script_s_requirements_are_installed_beside_shoal_once_and_only_workers_import_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_ENVS", str(home / "envs"))  # else this user's cache folder, shared by all
    assert importlib.util.find_spec("shoaldemo") is None
    folder = home / "needs"
    demo_wheel(folder / "wheels")
    (folder / "analyse.py").write_text(USES_A_PACKAGE)
    (folder / "requirements.txt").write_text("--no-index\n--find-links wheels\nshoaldemo==1.0\n")
    project = load_project(f"{folder / 'analyse.py'}:main")  # the coordinator never imports the script
    assert "shoaldemo" not in sys.modules
    assert project.pipeline.stages[0].name == "main"
    for run in ("one", "two"):  # two jobs (other inputs): the second finds the requirements installed
        (folder / run).mkdir()
        for n in range(3):
            (folder / run / f"{n}.txt").write_text(run)
        out = home / f"out-{run}"
        done = shoal_cli("run", f"{folder / 'analyse.py'}:main", "--input", str(folder / run), "--out", str(out))
        assert done.returncode == 0, done.stderr
        results = read_results(out)
        assert [r["result"]["value"] for r in results] == [42, 42, 42]
    (env,) = {Path(r["result"]["from"]).parent.parent for r in results}
    assert sorted(p.name for p in env.parent.iterdir() if p.is_dir()) == [env.name], "installed once, kept"
    assert env.parent == home / "envs"
    assert importlib.util.find_spec("shoaldemo") is None, "never installed into shoal's own environment"

    (folder / "requirements.txt").write_text("--no-index\nno-such-package-for-shoal==9\n")
    bad = shoal_cli("run", f"{folder / 'analyse.py'}:main", "--input", str(folder / "one"), "--out", str(home / "bad"))
    assert bad.returncode == 2, bad.stderr
    assert "requirements.txt does not install here" in bad.stderr
    assert "no-such-package-for-shoal" in bad.stderr


def test_a_script_that_does_not_import_on_the_workers_stops_the_run_with_its_reason(home: Path) -> None:
    folder = home / "broken"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "a.txt").write_text("x")
    (folder / "analyse.py").write_text("import no_such_module_for_shoal\n\ndef main(path):\n    return 1\n")
    done = shoal_cli("run", f"{folder / 'analyse.py'}:main", "--input", str(folder / "files"), "--out", str(home / "o"))
    assert done.returncode == 2, done.stderr
    assert "no_such_module_for_shoal" in done.stderr


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
