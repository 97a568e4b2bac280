"""The job service: accepts jobs, runs a few at a time on threads, and resumes them after a restart.

Each job runs through the same ``runner.execute`` as ``shoal run``, on an engine lent by
WarmEngines, with a Feed for live progress. Jobs run on slot threads that live as long as the
service: worker processes ask Linux to kill them when the thread that started them ends (so a
killed coordinator leaves no orphans), and warm workers must outlive any one job. The ledger's
``submissions`` table says which jobs the service accepted, so a server that stops (or is
killed) resumes the unfinished ones when it starts again, with the options each was submitted
with.

Streaming jobs have slots of their own (``max_streams``), apart from the ``max_jobs`` slots of
ordinary jobs. A stream stays open until its client closes it, mostly idle, and still needs a
coordinator thread all that time (parking it would mean stopping and resuming its coordinator
around every quiet spell); on the same slots, two forgotten streams would keep every other job
waiting. An idle stream may also be closed by the server (``stream_idle_timeout``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.access import ReadPolicy
from shoal.cleanup import Removed, remove_job
from shoal.coordinator import Coordinator
from shoal.errors import InputError, JobBusyError, JobStateError, NotFoundError, ShoalError
from shoal.middleware import Middleware
from shoal.prestart import settings_for
from shoal.run_folder import run_folder
from shoal.runner import Plan, execute, normalize_input, prepare, retry_plan
from shoal.settings import RunSettings
from shoal.sources import JOURNAL, is_stream, journal_path
from shoal.sources.files import glob_root, has_glob, local_path
from shoal.store import JobRecord, Ledger
from shoal.store import submissions as subs
from shoal.store.queries import find_job
from shoal.web.catalog import Catalog
from shoal.web.feed import Feed
from shoal.web.journals import Journals
from shoal.web.settings import ServerSettings
from shoal.web.warm import WarmEngines

log = logging.getLogger("shoal.web")
SWEEP_EVERY = 30.0  #: seconds between checks for idle engines to stop
REPORT_WAIT_S = 30.0  #: how long a retry waits for a job that has just ended to write its report


@dataclass
class Running:
    """A job on its way through the service: queued, then running on a thread."""

    plan: Plan
    feed: Feed
    thread: threading.Thread | None = None
    coordinator: Coordinator | None = None
    cancel: bool = False
    stopping: bool = False
    started_at: float | None = None  #: epoch seconds its run began here
    note: str | None = None  #: why the server ended it itself (an idle stream it closed)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def streaming(self) -> bool:
        return any(is_stream(value) for value in self.plan.inputs)

    @property
    def journal(self) -> Path | None:
        """The journal of a streaming job of this service (None for any other job)."""
        return _journal(self.plan.inputs)

    def attach(self, coordinator: Coordinator) -> None:
        with self.lock:
            self.coordinator = coordinator
            if self.cancel:
                coordinator.request_abort()
            elif self.stopping:
                coordinator.request_stop()


@dataclass
class Lane:
    """Jobs of one kind, waiting (oldest first) for one of the lane's own slot threads."""

    name: str
    size: int
    wake: threading.Condition
    queue: deque[Running] = field(default_factory=deque)


class JobService:
    """Runs the jobs submitted over the API: ``settings.max_jobs`` ordinary jobs at a time, and
    beside them up to ``settings.max_streams`` streaming jobs."""

    def __init__(
        self,
        settings: ServerSettings,
        ledger: Ledger,
        catalog: Catalog,
        *,
        middleware: Sequence[Middleware] = (),
        per_job: Callable[[], Middleware] | None = None,
        warm: WarmEngines | None = None,
    ) -> None:
        self.settings, self.ledger, self.catalog = settings, ledger, catalog
        self.middleware = list(middleware)
        self.per_job = per_job  #: makes a middleware that keeps state for one job run (metrics)
        self.warm = warm or WarmEngines(settings.data_root / "logs", settings.idle_engine_s)
        self.journals = Journals(settings.data_root / "streams")
        self._running: dict[str, Running] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._jobs = Lane("job", settings.max_jobs, threading.Condition(self._lock))
        self._streams = Lane("stream", settings.max_streams, threading.Condition(self._lock))
        self._slots = [
            threading.Thread(target=self._slot, args=(lane,), name=f"shoal-{lane.name}-slot-{n + 1}")
            for lane in (self._jobs, self._streams)
            for n in range(lane.size)
        ]
        self._sweeper = threading.Thread(target=self._sweep, name="shoal-warm-sweeper", daemon=True)
        self._watcher = threading.Thread(target=self._watch_streams, name="shoal-stream-watch", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Resume the jobs an earlier server accepted and did not finish."""
        self._sweeper.start()
        if self.settings.stream_idle_timeout is not None:
            self._watcher.start()
        for slot in self._slots:
            slot.start()
        for job in subs.unfinished(self.ledger):
            try:
                self._enqueue(self._resume_plan(job))
            except NotFoundError as exc:  # resumed when a server that serves its project starts
                log.warning("shoal: not resuming job %s: %s", job.id, exc)
            except ShoalError as exc:
                log.warning("shoal: cannot resume job %s: %s", job.id, exc)
                self._fail(job.id, str(exc))

    def begin_shutdown(self) -> None:
        """Stop taking jobs and tell every job to stop, settling its items in flight; returns at once."""
        with self._lock:
            self._closing.set()
            for lane in (self._jobs, self._streams):
                lane.queue.clear()
                lane.wake.notify_all()
            running = list(self._running.values())
        for job in running:
            with job.lock:
                job.stopping = True
                if job.coordinator is not None:
                    job.coordinator.request_stop()
            job.feed.wake_all()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every job and the warm workers, waiting for them; the jobs resume at the next start."""
        self.begin_shutdown()
        with self._lock:
            running = list(self._running.values())
        limit = timeout if timeout is not None else max((j.plan.settings.settle for j in running), default=0) + 10
        for slot in self._slots:
            if slot.is_alive():
                slot.join(limit)
        self.warm.close()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    # --- requests ------------------------------------------------------------------------------
    def submit(
        self,
        pipeline: str,
        inputs: Sequence[str],
        options: dict[str, Any] | None = None,
        *,
        by: str | None = None,
        upload: Path | None = None,
    ) -> JobRecord:
        """Create (or find) the job for a pipeline and inputs and queue it; returns it at once."""
        project = self.catalog.get(pipeline)
        with _readable():
            self._check_inputs(inputs)
            settings = self._run_settings(project, list(inputs), dict(options or {}))
            plan = prepare(self.ledger, project, settings)
        job = plan.job
        if job.finished:
            return job  # the same code already ran over the same inputs: its results stand
        subs.record_submission(self.ledger, job.id, by=by, upload=None if upload is None else str(upload))
        self._errors.pop(job.id, None)
        self._enqueue(plan)
        return job

    def submit_stream(
        self, pipeline: str, options: dict[str, Any] | None = None, *, by: str | None = None
    ) -> JobRecord:
        """A streaming job: it stays open, taking the items appended to it, until it is closed."""
        project = self.catalog.get(pipeline)
        journal = self.journals.create()
        plan = prepare(self.ledger, project, self._run_settings(project, [f"{JOURNAL}{journal}"], dict(options or {})))
        subs.record_submission(self.ledger, plan.job.id, by=by, upload=None)
        self._enqueue(plan)
        return plan.job

    def append(self, job_id: str, items: list[dict[str, Any]], *, close: bool = False) -> int:
        """Add items to a streaming job (durably, before answering); ``close`` ends it after them."""
        job = self._job(job_id)
        journal = _journal(json.loads(job.inputs))
        if journal is None:
            raise JobStateError(f"job {job_id} is not a streaming job: submit one with stream=true")
        if job.finished:
            raise JobStateError(f"job {job_id} has already {job.state}: it takes no more items")
        with _readable():
            self._check_inputs([item["uri"] for item in items if item.get("uri")])
        if not self.journals.append(journal, items, close=close):
            raise JobStateError(
                f"job {job_id} is closed: it takes no more items, and ends once those sent before the close are done"
            )
        return len(items)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: it stops now, and its items not yet done become cancelled."""
        job = self._job(job_id)
        if job.finished:
            raise JobStateError(f"job {job_id} has already {job.state}; only an unfinished job can be cancelled")
        with self._lock:
            for lane in (self._jobs, self._streams):
                queued = next((r for r in lane.queue if r.plan.job.id == job_id), None)
                if queued is not None:
                    lane.queue.remove(queued)
            running = self._running.get(job_id)
        if running is not None:
            with running.lock:
                running.cancel = True
                if running.coordinator is not None:
                    running.coordinator.request_abort()
            return job
        self.ledger.cancel(job_id)
        return self._job(job_id)

    def retry(self, job_id: str, *, same_inputs: bool = False) -> JobRecord:
        """Run a finished job's failed items again, with the code this server serves now and
        (unless ``same_inputs``) its inputs read again under this server's read policy."""
        job = self._settled(job_id)
        if not job.finished or self.active(job_id):
            raise JobStateError(f"job {job_id} is {job.state} here; only a finished job can be retried")
        if not job.failed:
            raise JobStateError(f"job {job_id} has no failed items to retry")
        project = self.catalog.for_job(job.pipeline, job.project)
        if project is None:
            raise NotFoundError(f"this server does not serve pipeline {job.pipeline!r} from {job.project}")
        try:
            flags = self._run_flags(json.loads(job.options))
            plan = retry_plan(self.ledger, job, project, flags, reread=not same_inputs)
        except JobBusyError as exc:
            raise JobStateError(str(exc)) from None
        self._errors.pop(job_id, None)
        self._enqueue(plan)
        return plan.job

    def remove(self, job_id: str) -> Removed:
        """Remove a job that is not queued or running here: its rows, run folder and uploads."""
        self._settled(job_id)
        with self._lock:
            if self._here(job_id):
                raise JobStateError(f"job {job_id} is queued or running here: cancel it first, then remove it")
            try:
                removed = remove_job(self.ledger, job_id)
            except JobBusyError as exc:
                raise JobStateError(str(exc)) from None
        self._errors.pop(job_id, None)
        return removed

    def _settled(self, job_id: str) -> JobRecord:
        """The job, once a run of it that has just ended here has written its report too."""
        job = self._job(job_id)
        deadline = time.monotonic() + REPORT_WAIT_S
        while job.finished and job_id in self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        return job

    def feed(self, job_id: str) -> Feed | None:
        """The live feed of a job running here now, if it is."""
        running = self._running.get(job_id)
        return None if running is None or running.thread is None else running.feed

    def active(self, job_id: str) -> bool:
        """Whether the job is queued or running here."""
        with self._lock:
            return self._here(job_id)

    def _here(self, job_id: str) -> bool:
        """active(), for a caller holding the lock."""
        return job_id in self._running or any(
            r.plan.job.id == job_id for lane in (self._jobs, self._streams) for r in lane.queue
        )

    def load(self) -> tuple[int, int]:
        """How many jobs run here now (open streams included), and how many wait."""
        with self._lock:
            return len(self._running), len(self._jobs.queue) + len(self._streams.queue)

    def error(self, job_id: str) -> str | None:
        """Why the job's last run here could not start or went wrong, if it did."""
        return self._errors.get(job_id)

    # --- running -------------------------------------------------------------------------------
    def _enqueue(self, plan: Plan) -> None:
        """Queue a job, unless it is queued or running here already: looked at and done under one
        lock, so two identical submissions at the same instant queue it once."""
        job = Running(plan, Feed(plan.job.id))
        lane = self._streams if job.streaming else self._jobs
        with self._lock:
            if self.closing or self._here(plan.job.id):
                return
            lane.queue.append(job)
            lane.wake.notify()

    def _slot(self, lane: Lane) -> None:
        """One slot of a lane: run its queued jobs, oldest first, until the service stops."""
        while True:
            with self._lock:
                while not lane.queue and not self.closing:
                    lane.wake.wait()
                if self.closing:
                    return
                job = lane.queue.popleft()
                job.thread = threading.current_thread()
                self._running[job.plan.job.id] = job
            try:
                self._run(job)
            except Exception:  # even recording a failure failed (the database is down): keep the slot
                log.exception("shoal: job %s could not be recorded as failed", job.plan.job.id)

    def _run(self, job: Running) -> None:
        """Run a job to its end; one that cannot start, or stops on an error, ends failed with why."""
        plan, job_id = job.plan, job.plan.job.id
        job.started_at = time.time()
        lease = None
        try:
            lease = self.warm.lease(plan.settings, plan.project)
            execute(
                self.ledger,
                plan,
                middleware=[*self.middleware, *([self.per_job()] if self.per_job else []), job.feed],
                report=False,
                on_start=job.attach,
                engine=lease,
            )
            if job.cancel:
                self.ledger.cancel(job_id)
            if job.note is not None:  # into the ledger only now: a job with an error there is not resumed
                subs.set_error(self.ledger, job_id, job.note)
            self._report(job_id, run_folder(plan.job.out))
        except JobBusyError as exc:
            self._errors[job_id] = str(exc)  # another process runs it; not ours to resume
        except ShoalError as exc:
            self._fail(job_id, str(exc))
        except Exception as exc:
            log.exception("shoal: job %s stopped on an unexpected error", job_id)
            self._fail(job_id, f"{type(exc).__name__}: {exc}")
        finally:
            if lease is not None:
                lease.close()
            if job.journal is not None:
                self.journals.forget(job.journal)
            with self._lock:
                self._running.pop(job_id, None)
            job.feed.close()

    def _report(self, job_id: str, out: Path) -> None:
        """Result files and report.json now. The charts too for a large job (in the same pass over
        its rows, so its page answers at once); a small job's are drawn when first asked for."""
        from shoal.report import write_report
        from shoal.report.timeline import EXACT

        large = sum(self.ledger.counts(job_id).values()) > EXACT
        write_report(self.ledger, job_id, out, charts=large)
        if not large:
            for chart in ("runtime.png", "throughput.png"):
                (out / chart).unlink(missing_ok=True)  # drawn for an earlier run: stale now

    def _fail(self, job_id: str, message: str) -> None:
        """Record why the job could not run, then end it failed (not running or pending forever):
        whoever sees it finished sees why."""
        self._errors[job_id] = message
        subs.set_error(self.ledger, job_id, message)
        job = find_job(self.ledger, job_id)
        if job is not None and not job.finished:
            self.ledger.set_state(job_id, "failed", finished=True)

    def _sweep(self) -> None:
        while not self._closing.wait(SWEEP_EVERY):
            self.warm.sweep()

    def _watch_streams(self) -> None:
        """Close the journal of each open stream that went ``stream_idle_timeout`` seconds
        without an item: it finishes the items it has, then ends."""
        idle = self.settings.stream_idle_timeout
        assert idle is not None
        reason = f"closed by the server after {idle:g} s without new items (--stream-idle-timeout)"
        while not self._closing.wait(min(1.0, idle / 4)):
            with self._lock:
                running = list(self._running.values())
            for job in running:
                journal, since = job.journal, job.started_at
                if journal is None or since is None:
                    continue
                if self.journals.close_if_idle(journal, idle, since, reason):
                    job.note = self._errors[job.plan.job.id] = reason  # shown at once, before it ends
                    log.info("shoal: job %s %s", job.plan.job.id, reason)

    # --- helpers -------------------------------------------------------------------------------
    def _job(self, job_id: str) -> JobRecord:
        job = find_job(self.ledger, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job

    def _run_settings(self, project: Any, inputs: list[str], options: dict[str, Any]) -> RunSettings:
        return settings_for(project, inputs or None, self._run_flags(options))

    def _run_flags(self, options: dict[str, Any]) -> dict[str, Any]:
        """A job's options with this server's ledger, engine, workers and read policy."""
        server = self.settings
        flags = {**options, "db_url": self.ledger.url, "engine": server.engine, "broker_url": server.broker_url}
        return flags | {"workers": server.workers, "read_roots": self._read_roots()}  # the read policy, job by job

    def _resume_plan(self, job: JobRecord) -> Plan:
        project = self.catalog.for_job(job.pipeline, job.project)
        if project is None:
            raise NotFoundError(f"this server does not serve pipeline {job.pipeline!r} from {job.project}")
        if project.fingerprint != job.fingerprint:
            raise JobStateError(
                f"the code of pipeline {job.pipeline!r} changed since job {job.id} was submitted; submit it again"
            )
        inputs = json.loads(job.inputs)
        settings = self._run_settings(project, inputs, json.loads(job.options))
        return Plan(project, settings, inputs, job, resumed=job.entries > 0)

    def _check_inputs(self, inputs: Sequence[str]) -> None:
        """Inputs a server's job may name: not its own journals, and what the read policy allows
        (see shoal.access; the sources check every entry again, and workers every file they open)."""
        if any(value.startswith(JOURNAL) for value in inputs):
            raise InputError("journal inputs belong to the server: submit a streaming job with stream=true")
        policy = ReadPolicy.of(self._read_roots())
        if policy is None:
            return
        for value in inputs:
            path = local_path(value.strip(), Path.cwd())
            if path is None:
                policy.remote(value.strip())
                continue
            target = normalize_input(str(path))
            try:
                policy.real(glob_root(target) if has_glob(target) else target)
            except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a loop of links (Python 3.11)
                raise InputError(f"input {value!r} cannot be read here: {type(exc).__name__}: {exc}") from None

    def _read_roots(self) -> list[str] | None:
        roots = self.settings.input_roots()
        return None if roots is None else [str(root) for root in roots]


def _journal(inputs: list[str]) -> Path | None:
    """The journal of a streaming job of this service, from its inputs (None for any other job)."""
    return journal_path(inputs[0]) if len(inputs) == 1 and inputs[0].startswith(JOURNAL) else None


@contextmanager
def _readable() -> Iterator[None]:
    """An input the file system refuses (a NUL, a name too long, not UTF-8) is the request's
    fault: an InputError (422) naming it, never a 500. The web schemas refuse such values
    first; this is where one that slipped past them would fail."""
    try:
        yield
    except (OSError, ValueError, UnicodeError) as exc:
        raise InputError(f"inputs: an input cannot be read here: {type(exc).__name__}: {exc}") from None
