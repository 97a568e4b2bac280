"""Run groups of items through a pipeline's stages inside one worker process.

Engine-agnostic: the local engine's subprocess and a Celery task both wrap a Runtime. The
runtime imports the project once, refuses to run code whose fingerprint differs from the job's,
runs every stage's setup() once, then turns item dicts into outcome dicts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shoal._json import dumps, inexact
from shoal.access import ReadPolicy
from shoal.errors import FingerprintMismatchError, StageResultError, WorkerStartError
from shoal.item import Item
from shoal.pipeline import BoundStage
from shoal.project import Project, load_project
from shoal.wire import JobSpec, Report, WireItem
from shoal.worker.context import ItemContext

#: called before each stage call with (first item index in the group, item count, stage index)
Probe = Callable[[int, int, int], None]
_TRACEBACK_CHARS = 4000
KEEP_CONTEXTS = 8  #: jobs whose scratch folders a worker keeps; older ones are removed


def _no_probe(first: int, count: int, stage: int) -> None:
    """Default probe: nothing watches this worker."""


class Runtime:
    """A project loaded and set up in this process, ready to run items of any job of this code."""

    def __init__(self, project: Project, probe: Probe = _no_probe) -> None:
        self.project = project
        self.probe = probe
        self.stages: list[BoundStage] = [s.bind() for s in project.pipeline.stages]
        self._contexts: dict[tuple[str, str], ItemContext] = {}

    @classmethod
    def start(cls, project: str | Path, fingerprint: str | None = None, probe: Probe = _no_probe) -> Runtime:
        """Import the project, check it is the expected version, and run each stage's setup()."""
        runtime = cls(load_project(project), probe)
        if fingerprint is not None:
            runtime.check(fingerprint, "this run")
        for bound in runtime.stages:
            try:
                bound.setup()
            except Exception as exc:
                raise WorkerStartError(
                    f"setup() of stage {bound.stage.name!r} failed on worker {worker_name()}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return runtime

    @property
    def fingerprint(self) -> str:
        return self.project.fingerprint

    def check(self, fingerprint: str, job: str) -> None:
        """Refuse to run code other than the job's: stale workers must not produce results."""
        if fingerprint != self.project.fingerprint:
            raise FingerprintMismatchError(
                f"worker {worker_name()} has project {self.project.root} at version {self.project.fingerprint}, "
                f"but {job} needs version {fingerprint}: deploy the same code to every worker and restart them"
            )

    def close(self) -> None:
        for context in self._contexts.values():
            shutil.rmtree(context.scratch_root, ignore_errors=True)
        for bound in self.stages:
            try:
                bound.teardown()
            except Exception:  # teardown problems must not hide the run's outcome
                traceback.print_exc()

    def run(self, wire_items: Sequence[WireItem], job: JobSpec) -> Report:
        """Run one group of a job's items through every stage and report on each."""
        self.check(job.fingerprint, f"job {job.job_id}")
        context = self._context(job)
        run = _GroupRun([self._item(w, context) for w in wire_items], self.probe)
        for index, bound in enumerate(self.stages):
            run.stage(index, bound)
        report = Report(took=sum(run.took))
        for i in range(len(run.items)):
            self._finish(run, i, report, context)
        return report

    def _context(self, job: JobSpec) -> ItemContext:
        key = (job.job_id, job.out)
        context = self._contexts.pop(key, None)
        if context is None:
            scratch = Path(tempfile.mkdtemp(prefix=f"shoal-{job.job_id}-"))
            artifacts = f"{job.out}/artifacts" if "://" in job.out else str(Path(job.out) / "artifacts")
            context = ItemContext(artifacts, scratch, job.fetch_timeout, ReadPolicy.of(job.read_roots))
        self._contexts[key] = context  # most recent last
        while len(self._contexts) > KEEP_CONTEXTS:  # a long-lived worker serves job after job
            shutil.rmtree(self._contexts.pop(next(iter(self._contexts))).scratch_root, ignore_errors=True)
        return context

    @staticmethod
    def _item(wire: WireItem, context: ItemContext) -> Item:
        return Item(
            wire["id"],
            wire.get("uri"),
            input=wire.get("input"),
            meta=wire.get("meta"),
            attempt=wire.get("attempt", 1),
            context=context,
        )

    def _finish(self, run: _GroupRun, i: int, report: Report, context: ItemContext) -> None:
        item = run.items[i]
        seconds = dumps(run.seconds[i])
        error = run.errors.get(i)
        if error is None:
            try:
                result = dumps(item.result)
                context.commit(item)
                report.ok.append([item.id, result, run.start[i], run.end[i], seconds])
            except TypeError as exc:
                last = self.stages[-1].stage.name
                error = _error(last, StageResultError(f"result is not JSON-serialisable: {exc}"))
            except OSError as exc:
                error = _error("artifacts", exc)
        if error is not None:
            context.discard(item)
            report.failed.append(
                {"id": item.id, "start": run.start[i], "end": run.end[i], "seconds": seconds, "error": error}
            )
        context.release(item)


class _GroupRun:
    """The state of one group moving through the stages: who is still alive, timings, errors."""

    def __init__(self, items: list[Item], probe: Probe) -> None:
        self.items = items
        self.probe = probe
        n = len(items)
        self.alive = list(range(n))
        self.start = [0.0] * n
        self.end = [0.0] * n
        self.seconds: list[dict[str, float]] = [{} for _ in range(n)]
        self.took = [0.0] * n
        self.errors: dict[int, dict[str, Any]] = {}

    def stage(self, index: int, bound: BoundStage) -> None:
        size = bound.stage.batch_size
        if size is None:
            for i in list(self.alive):
                self._call(index, bound, [i], single=True)
        else:
            alive = list(self.alive)
            for k in range(0, len(alive), size):
                self._call(index, bound, alive[k : k + size], single=False)

    def _call(self, index: int, bound: BoundStage, members: list[int], *, single: bool) -> None:
        name = bound.stage.name
        self.probe(members[0], members[-1] - members[0] + 1, index)
        now = time.time()
        for i in members:
            if not self.start[i]:
                self.start[i] = now
        began = time.perf_counter()
        try:
            if single:
                outs: list[Any] = [bound.call(self.items[members[0]])]
            else:
                outs = _check_batch(name, bound.call([self.items[i] for i in members]), len(members))
        except Exception as exc:
            outs = [exc] * len(members)
            batch = len(members)
        else:
            batch = 1
        share = (time.perf_counter() - began) / len(members)
        now = time.time()
        for i, out in zip(members, outs, strict=True):
            self.seconds[i][name] = share
            self.took[i] += share
            self.end[i] = now
            failure = _apply(self.items[i], name, out)
            if failure is not None:
                self.errors[i] = _error(name, failure, batch=batch)
                self.alive.remove(i)


def _check_batch(stage: str, outs: Any, expected: int) -> list[Any]:
    if not isinstance(outs, list | tuple):
        raise StageResultError(f"batch stage {stage!r} returned a {type(outs).__name__}, not a list")
    if len(outs) != expected:
        raise StageResultError(f"batch stage {stage!r} returned {len(outs)} results for {expected} items")
    return list(outs)


def _apply(item: Item, stage: str, out: Any) -> BaseException | None:
    """Record a stage's return value on the item, or return the exception it stands for."""
    if isinstance(out, BaseException):
        return out
    record = {} if out is None else out if isinstance(out, dict) else {stage: out}
    problem = inexact(record)
    if problem:
        return StageResultError(
            f"stage {stage!r} returned a result JSON cannot hold as it is: {problem}. "
            "Return finite numbers, strings, lists and dicts with string keys (None for a missing value)"
        )
    item.results[stage] = record
    item.result.update(record)
    return None


def _error(stage: str, exc: BaseException, *, batch: int = 1) -> dict[str, Any]:
    text = "".join(traceback.format_exception(exc))[-_TRACEBACK_CHARS:]
    return {
        "stage": stage,
        "type": type(exc).__name__,
        "message": str(exc) or repr(exc),
        "traceback": text,
        "batch": batch,
        "retry": getattr(exc, "retry", True) is not False,
    }


def worker_name() -> str:
    """host:pid, as the ledger and reports name a worker process."""
    return f"{os.uname().nodename}:{os.getpid()}"
