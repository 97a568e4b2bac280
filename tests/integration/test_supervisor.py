"""A Celery worker's supervisor that dies: its tasks fail at once and their heartbeats stop, so
the coordinator sends their chunks elsewhere instead of waiting on beats that mean nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shoal.engines.celery.supervisor import Code, Supervisor
from shoal.engines.celery.worker import _heartbeat
from shoal.errors import WorkerStartError
from shoal.project import load_project
from shoal.wire import JobSpec
from tests.conftest import MakeProject
from tests.helpers import ECHO

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


class Task:
    """What the heartbeat needs of a Celery task: its request, and the backend its states go to."""

    def __init__(self) -> None:
        self.request = SimpleNamespace(id="task-1", reply_to="coordinator-1")
        self.backend = self
        self.states: list[Any] = []

    def store_result(self, task_id: str, meta: dict[str, Any], state: str, *, request: Any) -> None:
        self.states.append((task_id, state, request.reply_to))


def test_tasks_fail_fast_and_heartbeats_stop_when_the_supervisor_dies(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load_project(make_project(ECHO))
    (tmp_path / "a.txt").write_text("hello\n")
    spec = JobSpec("job-1", project.fingerprint, str(tmp_path / "out"))
    supervisor = Supervisor(Code.of(project), 1)
    supervisor.start()
    try:
        _, report = supervisor.run(spec, [{"id": "a", "uri": str(tmp_path / "a.txt")}])
        assert [row[0] for row in report.ok] == ["a"]
        alive = Task()
        with _heartbeat(alive, supervisor):  # type: ignore[arg-type]
            time.sleep(1.5)
        assert alive.states == [("task-1", "PROGRESS", "coordinator-1")] * 2, "beats must carry the task's address"

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the supervisor's loop broke")

        monkeypatch.setattr(supervisor._engine, "poll", broken)
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                supervisor.run(spec, [{"id": "b", "uri": str(tmp_path / "a.txt")}])
            except BaseException as exc:
                outcome.append(exc)

        for _ in range(2):  # one handed over as it broke, one after it was gone
            waiting = threading.Thread(target=run, daemon=True)
            waiting.start()
            waiting.join(20)
            assert outcome, "a task kept waiting on a supervisor that had died"
            assert isinstance(outcome.pop(), WorkerStartError)
        assert "the supervisor's loop broke" in supervisor._failure

        dead = Task()
        with _heartbeat(dead, supervisor):  # type: ignore[arg-type]
            time.sleep(1.5)
        assert dead.states == [], "heartbeats went on for a worker that can run nothing"
    finally:
        monkeypatch.undo()
        supervisor.close()
