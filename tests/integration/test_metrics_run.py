"""`shoal run` with metrics: the hooks metrics rely on, and a busy port caught before any work."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

import shoal
from shoal.middleware import Middleware, Progress
from shoal.store import JobRecord
from tests.conftest import MakeProject
from tests.helpers import ECHO, shoal_cli

pytestmark = pytest.mark.integration


class Recorder(Middleware):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.alive: set[int | None] = set()

    def before_run(self, job: JobRecord, workers: int) -> None:
        self.calls.append(("before_run", workers))

    def on_progress(self, progress: Progress) -> None:
        self.calls.append(("on_progress", progress.done))
        self.alive.add(progress.workers_alive)


def test_progress_comes_right_after_before_run_and_counts_workers(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    recorder = Recorder()
    result = shoal.run(make_project(ECHO), [str(inputs(300))], workers=2, middleware=[recorder], report=False)
    assert result.counts["succeeded"] == 300
    assert recorder.calls[:2] == [("before_run", 2), ("on_progress", 0)]  # the baseline, before any item
    assert recorder.calls[-1] == ("on_progress", 300)
    assert recorder.alive <= {None, 0, 1, 2}


def test_a_busy_metrics_port_is_a_usage_error_before_any_work(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = shoal_cli(
            "run", str(make_project(ECHO)), "-i", str(inputs(3)), cwd=home, env={"SHOAL_METRICS_PORT": str(port)}
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"shoal: error: cannot serve metrics on 127.0.0.1:{port}: the port is in use; choose another --metrics-port\n"
    )
    assert not list((home / "shoal-runs").glob("*/results.jsonl"))
