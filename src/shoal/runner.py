"""`shoal.run()`: find or create the job for a project and its inputs, run it, write the report.

A job is identified by the pipeline's fingerprint, its inputs and the options that change
results, so running the same command again resumes an unfinished job (with or without --out),
reports a finished one instead of redoing it, and changed code makes a new job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shoal.coordinator import Coordinator, RetryPolicy
from shoal.engines import Engine, create_engine
from shoal.engines.local import LocalEngine
from shoal.errors import ConfigError, InputError, JobBusyError, JobStateError, RunFolderError
from shoal.finish import finish
from shoal.middleware import Middleware, MiddlewareStack, Progress
from shoal.prestart import Prestarted, settings_for
from shoal.project import Project, load_project
from shoal.reread import Reread, reread_failed
from shoal.run_folder import atomic_write, folder_owner, is_local, run_folder
from shoal.settings import RunSettings, default_home
from shoal.sources import open_feed, open_inputs
from shoal.sources.files import local_path
from shoal.states import EXIT_CODES, finished_state
from shoal.store import JobRecord, Ledger
from shoal.wire import JobSpec, Report

WAIT_POLL_S = 1.0  #: seconds between looks at a job another process runs (--wait)
log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run did, for the CLI, the API and tests."""

    job_id: str
    state: str  #: succeeded, completed_with_errors, failed (no item succeeded) or interrupted
    out: Path  #: the run folder (a UPath when it is a URL such as s3://bucket/prefix)
    counts: dict[str, int]
    resumed: bool  #: this run continued an unfinished job
    reused: bool  #: the job had already finished: nothing ran
    report: dict[str, Any] | None
    db: str
    reread: Reread | None = None  #: for a retry: what reading the inputs again found

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.state, 1)


@dataclass
class Plan:
    """A job ready to run: its project, settings, inputs and ledger record."""

    project: Project
    settings: RunSettings
    inputs: list[str]
    job: JobRecord
    resumed: bool  #: an unfinished job from an earlier run is continued
    retry: bool = False  #: a retry of the job's failed items, each with its retries again
    reread: Reread | None = None  #: for a retry: what reading the inputs again found


def run(
    project: str | Path,
    inputs: Sequence[str] | None = None,
    *,
    middleware: Sequence[Middleware] = (),
    report: bool = True,
    prestarted: Prestarted | None = None,
    **flags: Any,
) -> RunResult:
    """Run a project's pipeline over its inputs; ``flags`` are RunSettings fields.

    A finished job for the same code, inputs and options is reported, not run again.
    ``prestarted``: the project, settings and workers `prestart` made of the same arguments.
    """
    if prestarted is None:
        loaded = load_project(project)
        prestarted = Prestarted(loaded, settings_for(loaded, inputs, flags), None)
    loaded, settings, engine = prestarted.project, prestarted.settings, prestarted.engine
    try:
        ledger = Ledger(settings.ledger_url)
        try:
            while True:
                plan = prepare(ledger, loaded, settings)
                if plan.job.finished:
                    return _finished(ledger, plan.job, report)
                try:
                    return execute(ledger, plan, middleware=middleware, report=report, engine=engine)
                except JobBusyError:
                    if not settings.wait:
                        raise
                    if engine is not None:  # its workers would hold models while we wait; a new try starts its own
                        engine.stop(kill=True)
                        engine = None
                    time.sleep(WAIT_POLL_S)  # another process runs it: look again until it is done or free
        finally:
            ledger.close()
    finally:
        if engine is not None:  # workers started early that no run took (or that one stopped already)
            engine.stop(kill=True)


def retry(
    job_id: str,
    *,
    db_url: str,
    flags: dict[str, Any] | None = None,
    same_code: bool = False,
    same_inputs: bool = False,
    middleware: Sequence[Middleware] = (),
    report: bool = True,
) -> RunResult:
    """Run a job's failed items again, and only those, with the project's current code and its
    inputs read again: the new attempts are recorded on the same items (GNU parallel's
    --resume-failed).

    ``same_code``: refuse if the code changed since the job ran, rather than retry with the new one.
    ``same_inputs``: run each failed item with the row it read the first time.
    """
    ledger = Ledger(db_url)
    try:
        job = ledger.get_job(job_id)
        project = load_project(job.project)
        if same_code and project.fingerprint != job.fingerprint:
            raise ConfigError(
                f"the code of {job.project} changed since job {job.id} ran (version {job.fingerprint}, now "
                f"{project.fingerprint}): retry without --same-code to run its failed items with the new code"
            )
        options = {**json.loads(job.options), **(flags or {}), "db_url": db_url}
        try:
            plan = retry_plan(ledger, job, project, options, reread=not same_inputs)
        except JobStateError:  # nothing can run; a row read again may have changed a failure's cause
            if report and not same_inputs:
                _finished(ledger, job, report=True, again=True)
            raise
        return replace(execute(ledger, plan, middleware=middleware, report=report), reread=plan.reread)
    finally:
        ledger.close()


def retry_plan(ledger: Ledger, job: JobRecord, project: Project, flags: dict[str, Any], *, reread: bool = True) -> Plan:
    """Requeue a finished job's failed items (with ``project``'s code, and with ``reread``, with
    what their inputs hold now) and plan the run of them."""
    if project.pipeline.name != job.pipeline:
        raise ConfigError(f"{job.project} now defines pipeline {project.pipeline.name!r}, not {job.pipeline!r}")
    if not job.failed:
        raise ConfigError(f"job {job.id} has no failed items to retry ({job.state})")
    inputs = json.loads(job.inputs)
    settings = settings_for(project, inputs, flags)
    found = None
    if reread:
        ledger.check_unowned(job.id)  # a run holding the job keeps its rows as they are
        try:
            found = reread_failed(ledger, job, settings.policy)
        except InputError as exc:
            raise InputError(
                f"job {job.id}: its inputs cannot be read again ({exc}); retry with --same-inputs "
                "(same_inputs=true in the API) to run the failed items as they were first read"
            ) from None
    ledger.requeue_failed(job.id, project.fingerprint)
    return Plan(project, settings, inputs, ledger.get_job(job.id), resumed=True, retry=True, reread=found)


def _finished(ledger: Ledger, job: JobRecord, report: bool, again: bool = False) -> RunResult:
    """A job that already ran: its report, written now if it never got written (or ``again``)."""
    out = run_folder(job.out)
    data = None if again else _read_report(out)
    if data is None and report:
        from shoal.report import write_report

        with _run_folder(out):
            if is_local(out):
                out.mkdir(parents=True, exist_ok=True)
            data = write_report(ledger, job.id, out)
    return RunResult(job.id, job.state, out, ledger.counts(job.id), False, True, data, ledger.url)


def prepare(ledger: Ledger, project: Project, settings: RunSettings) -> Plan:
    """Check the inputs open, then find the job for them (to resume or report) or create it."""
    inputs = [normalize_input(v) for v in settings.inputs]
    open_inputs(inputs, policy=settings.policy)  # every input must open (and be allowed) before a job is made
    job, resumed = _job(ledger, project, settings, inputs)
    return Plan(project, settings, inputs, job, resumed)


def normalize_input(value: str) -> str:
    """Local paths become absolute (so the job is the same from any folder); URLs stay."""
    path = local_path(value.strip(), Path.cwd())
    return os.path.abspath(path) if path is not None else value.strip()


def job_key(project: Project, inputs: Sequence[str], settings: RunSettings) -> str:
    identity = {
        "pipeline": project.pipeline.name,
        "fingerprint": project.fingerprint,
        "inputs": list(inputs),
        "limit": settings.limit,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _job(ledger: Ledger, project: Project, settings: RunSettings, inputs: list[str]) -> tuple[JobRecord, bool]:
    def fields() -> dict[str, Any]:
        now = time.time()
        job_id = f"{project.pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        return {
            "id": job_id,
            "pipeline": project.pipeline.name,
            "fingerprint": project.fingerprint,
            "project": project.spec,
            "inputs": json.dumps(inputs),
            "options": json.dumps(settings.job_options()),
            "out": _out(settings.out) if settings.out else str(default_home() / job_id),
            "state": "pending",
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
            "entries": 0,
            "ingested": False,
            "owner": None,
            "heartbeat_at": None,
        }

    job, created = ledger.open_job(job_key(project, inputs, settings), fields, new=settings.new)
    if created:
        return job, False
    if settings.out is not None and _out(settings.out) != job.out:
        if job.finished and _read_report(run_folder(job.out)) is None:
            job = ledger.move_job(job.id, _out(settings.out))  # its report never got written: write it here
        elif not job.finished and not writable(job.out):
            job = ledger.move_job(job.id, _out(settings.out))  # its folder cannot be written: it takes this one
        elif not job.finished:
            raise ConfigError(
                f"job {job.id} for these inputs is unfinished and writes to {job.out}; "
                f"run again with --out {job.out} (or without --out) to resume it, or add --new to start over"
            )
    return job, not job.finished and ledger.has_items(job.id)


def writable(location: str) -> bool:
    """Whether a run folder can be written: a URL is presumed so; a local folder (or the first
    folder above it that exists) must be writable by this process."""
    if "://" in location:
        return True
    path = Path(location)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _check_folder_is_ours(out: Path, job: JobRecord, ledger: Ledger) -> None:
    """Refuse a run folder that holds another job's results: writing there would replace them."""
    owner = folder_owner(out)  # None: a new folder (or no readable job.json), nothing of another job's to lose
    if owner is not None and owner.get("job_id") not in (None, job.id):
        ledger.drop_unstarted(job.id)  # a job made just now for this folder: not left behind empty
        raise RunFolderError(
            f"the run folder {out} holds job {owner['job_id']} (ledger {_hidden(owner.get('db'))}), not job {job.id} "
            f"of ledger {ledger.safe_url}: pass another --out, or run from where that ledger is (see shoal jobs)"
        )


def _hidden(url: Any) -> str:
    """A ledger URL read from a file, without its password."""
    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "?"


def _without_password(url: str) -> str:
    """A ledger URL to write into a run folder others may read: never its password (libpq finds
    it again in PGPASSWORD or ~/.pgpass; or pass --db)."""
    parsed = make_url(url).difference_update_query(["password"])  # libpq takes one from the query, too
    return parsed._replace(password=None).render_as_string(hide_password=False)  # set() keeps a None


def _remove_unstarted_folder(out: Path) -> None:
    """Remove what a run that never started wrote (job.json, an empty logs folder), if that is all."""
    if not is_local(out):
        return
    with contextlib.suppress(OSError):
        (out / "job.json").unlink()
        for folder in (out / "logs", out):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def execute(
    ledger: Ledger,
    plan: Plan,
    *,
    middleware: Sequence[Middleware] = (),
    report: bool = True,
    on_start: Callable[[Coordinator], None] | None = None,
    engine: Engine | None = None,
) -> RunResult:
    """Run a prepared job until it finishes or is interrupted, then write its report.

    ``on_start`` receives the coordinator before it runs, so a caller on another thread (the web
    service) can stop it; in the main thread, Ctrl-C and SIGTERM stop it. ``engine`` replaces the
    one the settings name: the web service passes workers kept warm between jobs.
    """
    job, project, settings = plan.job, plan.project, plan.settings
    out = run_folder(job.out)
    with _run_folder(out):
        if is_local(out):
            out.mkdir(parents=True, exist_ok=True)
        _check_folder_is_ours(out, job, ledger)
        with atomic_write(out / "job.json") as handle:
            info = {"job_id": job.id, "db": _without_password(ledger.url), "pipeline": job.pipeline}
            json.dump({**info, "project": job.project}, handle)
    logs = out / "logs" if is_local(out) else default_home() / job.id / "logs"  # worker output stays local
    observers = [*middleware, *_metrics(settings, ledger)]  # a busy metrics port fails before any work
    if report:
        observers.append(ReportWarmer())
    stack = MiddlewareStack(observers)
    owner = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"  #: this run: host, process, token
    try:
        ledger.claim(job.id, owner)
    except BaseException:
        with contextlib.suppress(Exception):  # close what the observers opened (a metrics endpoint)
            stack.after_run(job, Progress(), "aborted")
        raise
    own_engine = engine is None
    if engine is None:
        engine = create_engine(settings, project, log_dir=logs)
    try:
        if isinstance(engine, LocalEngine):
            engine.log_to(logs)  # its workers started before the run folder was known (prestart)
        engine.start()  # workers import the project while the run is recorded and inputs are opened
    except BaseException:
        if own_engine and ledger.drop_unstarted(job.id):  # a job that never ran leaves nothing behind
            _remove_unstarted_folder(out)
        else:
            ledger.set_state(job.id, "interrupted")
        raise
    number = ledger.start_run(job.id, settings.engine_name, engine.workers, owner)
    feed = open_feed(plan.inputs, job, settings.limit, settings.policy)
    coordinator = Coordinator(
        ledger,
        job,
        engine,
        JobSpec(
            job.id,
            project.fingerprint,
            str(out),
            settings.fetch_timeout,
            settings.timeout,
            settings.read_roots,
            settings.result_cache,
        ),
        project.pipeline,
        feed,
        policy=RetryPolicy(settings.retries, settings.retry_backoff),
        middleware=stack,
        settle_s=settings.settle,
        owner=owner,
        retry=plan.retry,
    )
    if on_start is not None:
        on_start(coordinator)
    try:
        with _interruptible(coordinator):
            outcome = coordinator.run()
    except BaseException as exc:
        if not isinstance(exc, JobBusyError):  # a run that lost the job to another leaves it alone
            _quietly(ledger.end_run, job.id, number, "aborted", coordinator.startup_s, engine.workers)
            _quietly(ledger.set_state, job.id, "interrupted")
        with contextlib.suppress(Exception):  # let observers finish (stop bars, close endpoints)
            stack.after_run(job, coordinator.progress, "aborted")
        raise
    counts = ledger.counts(job.id)
    state = final_state(outcome, counts)
    ledger.end_run(job.id, number, outcome, coordinator.startup_s, engine.workers)
    ledger.set_state(job.id, state, finished=state != "interrupted")
    job = ledger.get_job(job.id)
    stack.after_run(job, coordinator.progress, outcome)
    finish(ledger, job, project.pipeline, out, state)  # the job's own outputs (@pipeline.finish)
    data = None
    if report:
        from shoal.report import write_report

        with _run_folder(out):
            data = write_report(ledger, job.id, out)
    return RunResult(job.id, state, out, counts, plan.resumed, False, data, ledger.url)


class ReportWarmer(Middleware):
    """Import what the report needs (Arrow, Parquet, matplotlib: about a second of CPU) on a thread
    once the first items are reported, not after the last one, when everyone waits for it. Not
    sooner: before that, the import would hold the GIL against the coordinator's first dispatch
    and take CPU from workers loading their models."""

    def __init__(self) -> None:
        self._started = False

    def after_report(self, worker: str, report: Report) -> None:
        if not self._started:
            self._started = True
            threading.Thread(target=_import_report, name="shoal-warm-report", daemon=True).start()


def _import_report() -> None:
    with contextlib.suppress(Exception):  # the report imports them again, and says what failed
        import shoal.outputs
        import shoal.report.charts
        import shoal.report.stats
        import shoal.report.timeline  # noqa: F401


def final_state(outcome: str, counts: dict[str, int]) -> str:
    """A run's end as the ledger's counts tell it: an item still pending means the job is not
    done, whatever the run believed."""
    if outcome == "interrupted" or counts["pending"]:
        if outcome == "finished":
            log.warning("the run ended with %d items still pending; the same command resumes them", counts["pending"])
        return "interrupted"
    return finished_state(counts)


@contextmanager
def _run_folder(out: Path) -> Iterator[None]:
    """A run folder that cannot be written (read-only, full) as one clear error."""
    try:
        yield
    except OSError as exc:
        raise RunFolderError(
            f"cannot write the run folder {out}: {exc.strerror or exc}. The job's items are safe in the ledger: "
            "make room (or make it writable) and run the same command again, or add --out ANOTHER_FOLDER"
        ) from exc


def _quietly(write: Callable[..., Any], *args: Any) -> None:
    """A bookkeeping write while a run is already failing (perhaps because the ledger is)."""
    try:
        write(*args)
    except Exception as exc:
        log.warning("could not record that the run stopped: %s", exc)


def _metrics(settings: RunSettings, ledger: Ledger) -> list[Middleware]:
    """`--metrics-port`: serve Prometheus metrics from this process while the job runs."""
    if settings.metrics_port is None:
        return []
    from shoal.metrics.endpoint import RunEndpoint

    return [RunEndpoint.start(settings, ledger)]


@contextmanager
def _interruptible(coordinator: Coordinator) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) once: stop dispatching and settle. Twice: stop now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if coordinator.stopping:
            coordinator.request_abort()
        else:
            coordinator.request_stop()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _out(location: str) -> str:
    """A run folder as the job records it: absolute when local, as given when a URL."""
    return location.rstrip("/") if "://" in location else str(Path(location).expanduser().resolve())


def _read_report(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "report.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None
