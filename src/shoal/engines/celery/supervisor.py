"""Run Celery tasks' chunks on local worker processes that outlive the tasks.

A Celery task only hands its chunk over and waits: the pipeline runs in processes owned by the
local engine, which loads the model once, enforces per-item timeouts and blames the item that
crashed a process. So a crashing item fails alone, the Celery worker itself never dies of it, and
no message is redelivered in a loop.

Tasks wait with a timeout and look at the supervisor meanwhile: if its thread died or stalled,
they fail at once (and their heartbeats stop), so the coordinator sends their chunks elsewhere
instead of trusting beats from a worker that can no longer run anything.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.engines import Chunk, ChunkLost, Event, ItemsDone, WorkerFailed, describe_loss
from shoal.engines.local import LocalEngine
from shoal.errors import WorkerStartError
from shoal.project import Project
from shoal.wire import JobSpec, Report, WireItem

if TYPE_CHECKING:
    from shoal.metrics.worker import WorkerMetrics

log = logging.getLogger(__name__)
POLL_S = 0.1  #: seconds the supervisor thread waits at most (new work and reports wake it at once)
STALLED_S = 10.0  #: seconds without a turn of the supervisor's loop after which it is presumed stuck


@dataclass(frozen=True)
class Code:
    """A code version a worker serves: where its files are, what they define, and the folders its
    processes import first (the project's installed requirements)."""

    root: Path
    fingerprint: str
    pipeline: str
    stages: list[str]
    python_path: tuple[str, ...] = ()

    @classmethod
    def of(cls, project: Project, python_path: tuple[str, ...] = ()) -> Code:
        stages = [s.name for s in project.pipeline.stages]
        return cls(Path(project.spec), project.fingerprint, project.pipeline.name, stages, python_path)


@dataclass
class _Waiting:
    items: list[WireItem]
    future: Future[tuple[str, Report]]
    report: Report = field(default_factory=Report)
    reported: set[str] = field(default_factory=set)
    worker: str = ""


class Supervisor:
    """A pool of local worker processes serving chunks submitted from any thread."""

    def __init__(
        self, code: Code, processes: int, *, log_dir: Path | None = None, metrics: WorkerMetrics | None = None
    ) -> None:
        self.code = code
        self.metrics = metrics
        self._engine = LocalEngine(
            code.root, code.fingerprint, processes, log_dir=log_dir, carry_logs=True, python_path=code.python_path
        )
        self._inbox: queue.SimpleQueue[tuple[JobSpec, list[WireItem], Future[tuple[str, Report]]]] = queue.SimpleQueue()
        self._waiting: dict[int, _Waiting] = {}
        self._ids = itertools.count(1)
        self._failure = ""
        self.done = 0  #: items this worker finished, succeeded or failed (its status record's counters)
        self.failed = 0
        self._turned = time.monotonic()  #: when the supervisor's loop last went round
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  #: a task thread's nudge: new work is waiting
        self._thread = threading.Thread(target=self._loop, name="shoal-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"!")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def healthy(self) -> bool:
        """The supervisor's loop is running and going round: chunks handed to it will be run."""
        return not self._failure and self._thread.is_alive() and time.monotonic() - self._turned < STALLED_S

    @property
    def loaded(self) -> list[str]:
        """The code versions this pool's processes run: its one."""
        return [self.code.fingerprint]

    def running(self) -> list[dict[str, Any]]:
        """This worker's processes and the items each runs now (see LocalEngine.running), with
        stages by name and the code version they run."""
        processes = self._engine.running()
        for p in processes:
            p["version"] = self.code.fingerprint
            if isinstance(p.get("stage"), int) and 0 <= p["stage"] < len(self.code.stages):
                p["stage"] = self.code.stages[p["stage"]]
        return processes

    def run(self, job: JobSpec, items: list[WireItem]) -> tuple[str, Report]:
        """Run a chunk; returns the name of the process that ran it and what became of each item."""
        if self._failure:
            raise WorkerStartError(self._failure)
        future: Future[tuple[str, Report]] = Future()
        self._inbox.put((job, items, future))
        os.write(self._wake_w, b"!")
        while True:
            try:
                return future.result(timeout=POLL_S * 10)
            except FutureTimeout:
                if not self.healthy:
                    raise WorkerStartError(
                        self._failure or f"this worker's supervisor has not run for {STALLED_S:g} s"
                    ) from None

    def _loop(self) -> None:
        try:
            self._engine.start()  # spawned from this thread: the processes die with it
            while not self._stop.is_set():
                self._turned = time.monotonic()
                while self._engine.capacity() > 0 and not self._inbox.empty():
                    job, items, future = self._inbox.get()
                    chunk = Chunk(next(self._ids), job, items)
                    self._waiting[chunk.id] = _Waiting(items, future)
                    self._engine.submit(chunk)
                for event in self._engine.poll(POLL_S, wake=self._wake_r):
                    self._handle(event)
                self._drain_wake()
        except Exception as exc:
            log.exception("shoal: the worker's supervisor stopped")
            self._failure = self._failure or f"this worker's supervisor stopped: {type(exc).__name__}: {exc}"
        finally:
            self._engine.stop(kill=True)
            why = self._failure or "the worker is shutting down"
            for waiting in self._waiting.values():
                waiting.future.set_exception(WorkerStartError(why))
            while not self._inbox.empty():  # handed over but never started
                self._inbox.get()[2].set_exception(WorkerStartError(why))

    def _drain_wake(self) -> None:
        if select.select([self._wake_r], [], [], 0)[0]:
            os.read(self._wake_r, 4096)

    def _handle(self, event: Event) -> None:
        if isinstance(event, ItemsDone):
            waiting = self._waiting[event.chunk_id]
            waiting.report.extend(event.report)
            waiting.reported.update(row[0] for row in event.report.ok)
            waiting.reported.update(f["id"] for f in event.report.failed)
            waiting.worker = event.worker
            if len(waiting.reported) == len(waiting.items):
                self._finish(event.chunk_id)
        elif isinstance(event, ChunkLost):
            self._lost(event)
        elif isinstance(event, WorkerFailed):
            self._failure = event.message
            for chunk_id in list(self._waiting):
                self._waiting.pop(chunk_id).future.set_exception(WorkerStartError(event.message))

    def _lost(self, event: ChunkLost) -> None:
        """A process died or hung: its running items fail (the coordinator decides on retries), the
        untouched ones go back unfinished."""
        waiting = self._waiting[event.chunk_id]
        waiting.worker = waiting.worker or event.worker
        unfinished = [w["id"] for w in waiting.items if w["id"] not in waiting.reported]
        suspects = [i for i in unfinished if i in set(event.suspects)]
        stage, message = describe_loss(event, self.code.stages)
        error = {"stage": stage, "type": event.kind, "message": message, "traceback": "", "batch": len(suspects)}
        waiting.report.failed += [
            {"id": i, "start": None, "end": None, "seconds": "{}", "error": error} for i in suspects
        ]
        waiting.report.lost += [i for i in unfinished if i not in set(suspects)]
        waiting.report.extend(Report(logs=event.logs))  # how its process died, if it said
        self._finish(event.chunk_id)

    def _finish(self, chunk_id: int) -> None:
        waiting = self._waiting.pop(chunk_id)
        self.done += len(waiting.report.ok) + len(waiting.report.failed)
        self.failed += len(waiting.report.failed)
        if self.metrics is not None:
            self.metrics.record(waiting.worker, waiting.report, self.code.pipeline)
            census = self._engine.census()
            self.metrics.set_workers(census.alive, census.busy)
        waiting.future.set_result((waiting.worker, waiting.report))
