"""How `shoal run` starts its workers: forked from the coordinator where a fork is what a fresh
interpreter would be (then a worker starts in milliseconds), a fresh interpreter otherwise. A forked
worker must be indistinguishable where it matters: its command line, its random numbers, and the
descriptors it holds (another worker's pipe held open would hide that worker's death)."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.engines.forked import _exit_code, fork_is_safe
from shoal.engines.local import LocalEngine
from shoal.project import load_project
from tests.conftest import MakeProject
from tests.helpers import read_results, shoal_cli

pytestmark = pytest.mark.integration

INTROSPECT = """
import logging, os, signal, sys, time
from pathlib import Path
import numpy as np
import shoal

logging.basicConfig(level=logging.INFO)  # the pipeline's own logging: not the shoal command's
log = logging.getLogger("introspect")
pipeline = shoal.Pipeline("introspect")
IMPORTED_BY = os.getpid()  # module-level state: each worker's own, as in a fresh interpreter
RNG = np.random.default_rng()
CRASH_ONCE = os.environ.get("CRASH_ONCE")  # a file: the first worker to take item-0005 dies

def target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:  # the listing's own descriptor, closed since
        return ""

@pipeline.stage()
def look(item):
    time.sleep(0.05)  # long enough that both workers take chunks
    if CRASH_ONCE and item.id.startswith("item-0005") and not Path(CRASH_ONCE).exists():
        Path(CRASH_ONCE).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    log.info("looked at %s", item.id)
    pipes = [fd for fd in os.listdir("/proc/self/fd") if target(fd).startswith("pipe:")]
    return {
        "pid": os.getpid(),
        "forked": "shoal.cli" in sys.modules,  # only the coordinator imported the CLI
        "cmdline": open("/proc/self/cmdline").read().replace("\\0", " "),
        "pipes": len(pipes),
        "imported_by": IMPORTED_BY,
        "draw": float(np.random.random()),
        "module_draw": float(RNG.random()),
    }
"""


def _run(home: Path, project: Path, listing: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = home / "out"
    result = shoal_cli("run", str(project), "-i", str(listing), "--workers", "2", "--out", str(out), cwd=home, env=env)
    assert result.returncode == 0, result.stderr
    return [row["result"] for row in read_results(out)]


def _logged(home: Path) -> str:
    return "".join(log.read_text() for log in (home / "out" / "logs").glob("*.log"))


@pytest.mark.usefixtures("no_stray_workers")
def test_forked_workers_look_like_workers_draw_their_own_numbers_and_hold_only_their_own_pipes(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    results = _run(home, make_project(INTROSPECT), inputs(40))
    by_worker = Counter(r["pid"] for r in results)
    assert len(by_worker) == 2, by_worker
    assert all(r["forked"] for r in results), "shoal run started fresh interpreters where it could fork"
    assert all("-m shoal.engines.local_worker" in r["cmdline"] for r in results), results[0]["cmdline"]
    # Two: the worker's own inbox and outbox, as a fresh worker given only those (pass_fds) holds.
    assert {r["pipes"] for r in results} == {2}
    assert all(r["imported_by"] == r["pid"] for r in results), "a worker ran the project's code imported elsewhere"
    for key in ("draw", "module_draw"):
        draws = [r[key] for r in results]
        assert len(set(draws)) == len(draws), f"two forked workers drew the same random numbers ({key})"
    assert _logged(home).count("INFO:introspect:looked at item-") == 40, "the pipeline's own logging was lost"


@pytest.mark.usefixtures("no_stray_workers")
def test_a_worker_replaced_during_the_run_is_a_fresh_interpreter(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    marker = home / "crashed"
    results = _run(home, make_project(INTROSPECT), inputs(40), env={"CRASH_ONCE": str(marker)})
    assert marker.exists(), "no worker was killed"
    assert len(results) == 40
    replacements = {r["pid"] for r in results if not r["forked"]}
    assert replacements, "the replacement was forked from a coordinator that has run the project's code"
    assert all(r["imported_by"] == r["pid"] for r in results)


@pytest.mark.usefixtures("no_stray_workers")
def test_shoal_worker_start_spawn_gives_fresh_interpreters(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    results = _run(home, make_project(INTROSPECT), inputs(40), env={"SHOAL_WORKER_START": "spawn"})
    assert len({r["pid"] for r in results}) == 2
    assert not any(r["forked"] for r in results)
    assert {r["pipes"] for r in results} == {2}


def test_no_fork_beside_another_thread_after_a_projects_import_or_where_the_project_has_its_own_packages(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOAL_WORKER_START", raising=False)
    project = make_project(INTROSPECT)
    release = threading.Event()
    if threading.active_count() == 1 and not any(m.startswith("_shoal_") for m in sys.modules):
        assert fork_is_safe()  # (pytest's own threads, under xdist, make the point otherwise)
        other = threading.Thread(target=release.wait)
        other.start()
        try:
            assert not fork_is_safe(), "forked beside a running thread: its locks would stay held in the child"
        finally:
            release.set()
            other.join()
    load_project(project)
    assert not fork_is_safe(), "forked after the project's code ran here: workers would share its state"
    with_packages = LocalEngine(project, "x", 1, python_path=("/some/requirements",))
    try:
        assert not with_packages._may_fork(), "a forked worker would not import the project's own packages first"
    finally:
        with_packages.stop()
    monkeypatch.setenv("SHOAL_WORKER_START", "spawn")
    assert not fork_is_safe()


@pytest.mark.parametrize(
    ("code", "status", "said"), [(None, 0, ""), (3, 3, ""), ("no model file", 1, "no model file\n")]
)
def test_sys_exit_in_a_forked_worker_ends_it_as_in_a_fresh_interpreter(
    code: object, status: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(SystemExit(code)) == status
    assert capsys.readouterr().err == said
