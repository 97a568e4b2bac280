"""Workers started without a project: they run whatever code a job publishes, signed with the
cluster key, fetched by fingerprint; an edit reaches them with the next job; what they cannot run
(a foreign signature, another Python, requirements that do not install) fails the job at once."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.bundles import KEY_ENV
from shoal.engines.celery.status import BEAT_S
from tests.conftest import MakeProject
from tests.engines import EngineUnderTest, engine_for
from tests.helpers import demo_wheel, read_results, shoal_cli

pytestmark = pytest.mark.integration
KEY = "cluster-key-for-the-tests-0123456789"

TEXT = """
import shoal

pipeline = shoal.Pipeline("{name}")

@pipeline.stage()
def {stage}(item):
    return {{"file": __file__, "said": {expression}}}
"""

USES_REQUIREMENT = """
import shoal

pipeline = shoal.Pipeline("needs")

@pipeline.stage()
def use(item):
    import shoaldemo  # only the workers have it: the coordinator imports this file too

    return {"value": shoaldemo.VALUE, "from": shoaldemo.__file__}
"""


@pytest.fixture
def cluster(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineUnderTest]:
    monkeypatch.setenv(KEY_ENV, KEY)  # the workers and the runs below share it
    under_test = engine_for("celery-redis", home)
    yield under_test
    under_test.stop_workers()


def _run(
    cluster: EngineUnderTest, project: Path, data: Path, out: Path, *extra: str, env: dict[str, str] | None = None
):  # type: ignore[no-untyped-def]
    args = ["run", str(project), "-i", str(data), "--broker", cluster.broker, "--queue", cluster.queue]
    return shoal_cli(*args, "--out", str(out), *extra, cwd=cluster.home, env=env, timeout=300)


def _data(home: Path, n: int = 4) -> Path:
    folder = home / "data"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"{i}.txt").write_text(f"{i}\n")
    return folder


def _status(cluster: EngineUnderTest, home: Path) -> dict[str, Any]:
    status = json.loads(shoal_cli("workers", "--broker", cluster.broker, "--json", cwd=home).stdout)
    (mine,) = [w for w in status if w["queue"] == f"{cluster.queue}.any"]
    return dict(mine)


def test_a_worker_without_a_project_runs_two_projects_and_an_edit_fetched_by_fingerprint(
    cluster: EngineUnderTest, make_project: MakeProject, home: Path
) -> None:
    cache = home / "worker-cache"
    cluster.start_workers(None, 1, concurrency=2, extra=("--cache", str(cache), "--warm", "1", "--keep", "2"))
    data = _data(home)
    first = make_project(TEXT.format(name="first", stage="one", expression='"one"'), name="first")
    second = make_project(TEXT.format(name="second", stage="two", expression='"two"'), name="second")

    for project, said in ((first, "one"), (second, "two")):
        done = _run(cluster, project, data, home / f"out-{said}")
        assert done.returncode == 0, done.stderr[-3000:]
        results = read_results(home / f"out-{said}")
        assert sorted(r["result"]["said"] for r in results) == [said] * 4
        assert {Path(r["result"]["file"]).parent.parent.parent for r in results} == {cache / "bundles"}

    # an edit: the next run carries a new fingerprint, and the same worker runs the new code
    (first / "pipeline.py").write_text(TEXT.format(name="first", stage="one", expression='"edited"'))
    done = _run(cluster, first, data, home / "out-edited")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(r["result"]["said"] for r in read_results(home / "out-edited")) == ["edited"] * 4

    log = (home / "celery-worker-1.log").read_text()
    assert log.count("fetched code bundle") == 3, log[-3000:]
    mine = _status(cluster, home)
    deadline = time.monotonic() + 3 * BEAT_S
    while mine["done"] < 12 and time.monotonic() < deadline:  # its record is a heartbeat: BEAT_S old at most
        time.sleep(0.2)
        mine = _status(cluster, home)
    assert len(mine["loaded"]) == 1, "--warm 1: one version keeps its processes"
    assert mine["done"] == 12  # what the retired versions' processes did counts too
    kept = sorted(p.name for p in (cache / "bundles").iterdir() if p.is_dir())
    assert len(kept) == 2, f"--keep 2: the two most recent stay on disk, not {kept}"
    assert mine["loaded"][0] in kept


def test_a_bundle_signed_with_another_key_fails_the_job_at_once_and_the_worker_says_so(
    cluster: EngineUnderTest, make_project: MakeProject, home: Path
) -> None:
    cluster.start_workers(None, 1, extra=("--cache", str(home / "cache")))
    project = make_project(TEXT.format(name="foreign", stage="one", expression='"x"'))
    done = _run(cluster, project, _data(home), home / "out", env={KEY_ENV: "somebody-elses-key-0123456789"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "is not signed with this worker's cluster key: refused" in done.stderr
    assert "is not signed with this worker's cluster key" in (home / "celery-worker-1.log").read_text()
    assert not (home / "cache" / "bundles").exists() or not any(
        p.is_dir() for p in (home / "cache" / "bundles").iterdir()
    )
    missing = _run(cluster, project, _data(home), home / "out", env={KEY_ENV: ""})
    assert missing.returncode == 2
    assert f"{KEY_ENV} is not set: the workers on {cluster.broker} were started without a project" in missing.stderr


FAILS_SETUP = """
import shoal

pipeline = shoal.Pipeline("nomodel")

@pipeline.stage()
class Load:
    def setup(self):
        raise RuntimeError("no model file on this machine")

    def process(self, items):
        return [{} for _ in items]
"""


def test_code_that_does_not_start_on_the_worker_fails_the_job_at_once_and_the_worker_goes_on(
    cluster: EngineUnderTest, make_project: MakeProject, home: Path
) -> None:
    cluster.start_workers(None, 1, extra=("--cache", str(home / "cache")))
    broken = make_project(FAILS_SETUP, name="broken")
    done = _run(cluster, broken, _data(home), home / "out-broken")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "does not start here" in done.stderr
    assert "no model file on this machine" in done.stderr
    fine = make_project(TEXT.format(name="fine", stage="one", expression='"ok"'), name="fine")
    after = _run(cluster, fine, _data(home), home / "out-fine")  # the same worker serves the next project
    assert after.returncode == 0, after.stderr[-3000:]
    assert sorted(r["result"]["said"] for r in read_results(home / "out-fine")) == ["ok"] * 4


def test_requirements_install_once_into_a_cached_environment_and_a_bad_one_fails_fast(
    cluster: EngineUnderTest, make_project: MakeProject, home: Path
) -> None:
    assert importlib.util.find_spec("shoaldemo") is None  # the worker's own environment lacks it
    cache = home / "cache"
    cluster.start_workers(None, 1, concurrency=2, extra=("--cache", str(cache)))
    project = make_project(USES_REQUIREMENT, toml='[project]\ninclude = ["wheels/*.whl"]\n')
    demo_wheel(project / "wheels")
    (project / "requirements.txt").write_text("--no-index\n--find-links wheels\nshoaldemo==1.0\n")
    done = _run(cluster, project, _data(home), home / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    results = read_results(home / "out")
    assert {r["result"]["value"] for r in results} == {42}
    (env,) = {Path(r["result"]["from"]).parent.parent for r in results}
    assert env.parent == cache / "envs"
    assert importlib.util.find_spec("shoaldemo") is None, "never installed into the worker's environment"

    (project / "requirements.txt").write_text("--no-index\nno-such-package-for-shoal==9\n")
    bad = _run(cluster, project, _data(home), home / "out-bad")
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "requirements.txt does not install on this worker" in bad.stderr
    assert "no-such-package-for-shoal" in bad.stderr  # uv's own words on what failed
    assert sorted(p.name for p in (cache / "envs").iterdir() if p.is_dir()) == [env.name], "no half install kept"


def test_code_for_another_python_is_refused_on_rabbitmq_with_bundles_in_a_shared_folder(
    home: Path, make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    cluster = engine_for("celery-rabbitmq", home)
    shared = f"file://{home / 'shared-bundles'}"
    try:
        cluster.start_workers(None, 1, extra=("--cache", str(home / "cache"), "--bundles", shared))
        project = make_project(TEXT.format(name="rabbit", stage="one", expression='"hop"'))
        done = _run(cluster, project, _data(home), home / "out", "--bundles", shared)
        assert done.returncode == 0, done.stderr[-3000:]
        assert sorted(r["result"]["said"] for r in read_results(home / "out")) == ["hop"] * 4

        (project / "shoal.toml").write_text('[project]\npython = "<3.0"\n')
        old = _run(cluster, project, _data(home), home / "out-old", "--bundles", shared)
        assert old.returncode == 2, old.stderr[-3000:]
        assert "declares Python <3.0; this worker runs Python 3." in old.stderr
        no_store = _run(cluster, project, _data(home), home / "out-old")  # the same job, resumed
        assert "a RabbitMQ broker keeps no code bundles: set --bundles URL" in no_store.stderr
    finally:
        cluster.stop_workers()
