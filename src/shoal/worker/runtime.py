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
from shoal.pipeline import BoundStage, Stage
from shoal.project import Project, load_project
from shoal.wire import CACHED, JobSpec, Report, WireItem
from shoal.worker.cache import ResultCache, cache_key, content_digest, open_cache
from shoal.worker.context import ItemContext

#: called before each stage call with (first item index in the group, item count, stage index)
Probe = Callable[[int, int, int], None]
#: called with (done, total) when a stage says how far its call has got (``item.progress``)
ProgressSink = Callable[[int, int], None]
_TRACEBACK_CHARS = 4000
KEEP_CONTEXTS = 8  #: jobs whose scratch folders a worker keeps; older ones are removed


def _no_probe(first: int, count: int, stage: int) -> None:
    """Default probe: nothing watches this worker."""


def _no_progress(done: int, total: int) -> None:
    """Default progress sink: nothing shows it."""


class Runtime:
    """A project loaded and set up in this process, ready to run items of any job of this code."""

    def __init__(self, project: Project, probe: Probe = _no_probe, on_progress: ProgressSink = _no_progress) -> None:
        self.project = project
        self.probe = probe
        self.on_progress = on_progress
        self.stages: list[BoundStage] = [s.bind() for s in project.pipeline.stages]
        self._contexts: dict[tuple[str, str], ItemContext] = {}
        self._caches: dict[str, ResultCache] = {}

    @classmethod
    def start(
        cls,
        project: str | Path,
        fingerprint: str | None = None,
        probe: Probe = _no_probe,
        on_progress: ProgressSink = _no_progress,
    ) -> Runtime:
        """Import the project, check it is the expected version, and run each stage's setup()."""
        runtime = cls(load_project(project), probe, on_progress)
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
        cache = self._cache(job.cache) if any(b.stage.cache for b in self.stages) else None
        run = _GroupRun([self._item(w, context) for w in wire_items], self.probe, cache, self.fingerprint)
        for index, bound in enumerate(self.stages):
            run.stage(index, bound)
        report = Report(took=sum(run.took))
        for i in range(len(run.items)):
            self._finish(run, i, report, context)
        return report

    def _cache(self, url: str | None) -> ResultCache | None:
        if url is None:
            return None
        if url not in self._caches:
            self._caches[url] = open_cache(url)
        return self._caches[url]

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

    def _item(self, wire: WireItem, context: ItemContext) -> Item:
        return Item(
            wire["id"],
            wire.get("uri"),
            input=wire.get("input"),
            meta=wire.get("meta"),
            attempt=wire.get("attempt", 1),
            context=context,
            on_progress=self.on_progress,
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

    def __init__(self, items: list[Item], probe: Probe, cache: ResultCache | None, fingerprint: str) -> None:
        self.items = items
        self.probe = probe
        self.cache = cache
        self.fingerprint = fingerprint
        self._content: dict[int, bytes] = {}  #: each item's content digest, read once for every cached stage
        n = len(items)
        self.alive = list(range(n))
        self.start = [0.0] * n
        self.end = [0.0] * n
        self.seconds: list[dict[str, float]] = [{} for _ in range(n)]
        self.took = [0.0] * n
        self.errors: dict[int, dict[str, Any]] = {}

    def stage(self, index: int, bound: BoundStage) -> None:
        keys = self._cached(bound.stage) if bound.stage.cache and self.cache is not None else {}
        size = bound.stage.batch_size
        alive = [i for i in list(self.alive) if not self._hit(bound.stage.name, i, keys)]
        if size is None:
            for i in alive:
                self._call(index, bound, [i], single=True)
        else:
            if bound.stage.sort_by is not None:
                alive = self._sorted(bound.stage, alive)
            for k in range(0, len(alive), size):
                self._call(index, bound, alive[k : k + size], single=False)
        if keys and self.cache is not None:
            for i, key in keys.items():
                if i not in self.errors and bound.stage.name in self.items[i].results:
                    self.cache.put(key, self.items[i].results[bound.stage.name])

    def _cached(self, stage: Stage) -> dict[int, str]:
        """The cache key of each live item, its input read once; an unreadable input fails here."""
        keys: dict[int, str] = {}
        for i in list(self.alive):
            began = time.perf_counter()
            try:
                if i not in self._content:
                    self._content[i] = content_digest(self.items[i])
                keys[i] = cache_key(stage, self.fingerprint, self._content[i])
            except Exception as exc:
                self._fail(i, stage.name, exc)
            self._time(i, stage.name, time.perf_counter() - began)
        return keys

    def _hit(self, name: str, i: int, keys: dict[int, str]) -> bool:
        """Whether item ``i``'s result for this stage came from the cache (then it is applied)."""
        if i not in keys or self.cache is None:
            return False
        began = time.perf_counter()
        record = self.cache.get(keys[i])
        if record is None:
            return False  # a miss: the stage runs and its result is kept under keys[i]
        del keys[i]
        if not self.start[i]:
            self.start[i] = time.time()
        failure = _apply(self.items[i], name, record)
        self._time(i, name, time.perf_counter() - began)
        self.seconds[i][CACHED + name] = 1.0
        self.end[i] = time.time()
        if failure is not None:
            self._fail(i, name, failure)
        return True

    def _sorted(self, stage: Stage, alive: list[int]) -> list[int]:
        """Live items by cost (sort_by), so each batch holds items of similar size."""
        assert stage.sort_by is not None
        costs: dict[int, float] = {}
        for i in alive:
            try:
                costs[i] = float(stage.sort_by(self.items[i]))
            except Exception as exc:
                self._fail(i, stage.name, exc)
        return sorted(costs, key=costs.__getitem__)

    def _time(self, i: int, name: str, seconds: float) -> None:
        self.seconds[i][name] = self.seconds[i].get(name, 0.0) + seconds
        self.took[i] += seconds

    def _fail(self, i: int, name: str, exc: BaseException) -> None:
        if not self.start[i]:
            self.start[i] = time.time()
        self.end[i] = time.time()
        self.errors[i] = _error(name, exc)
        self.alive.remove(i)

    def _call(self, index: int, bound: BoundStage, members: list[int], *, single: bool) -> None:
        name = bound.stage.name
        self.probe(min(members), max(members) - min(members) + 1, index)
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
            self._time(i, name, share)
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
