"""`shoal worker [PROJECT] --broker URL`: a Celery worker serving one project's code version, or,
without a project, any version a job publishes as a signed bundle (see shoal.bundles).

The Celery worker runs a thread pool; each thread hands its task's chunk to the supervisor's
processes and waits, beating a heartbeat into the result backend so the coordinator can tell a
slow chunk from a dead worker.

Every process logs to a file of its own in the log dir, ``<host>-<pid>.log``: this one (Celery's
own log) and each of the supervisor's; what the latter write while running a chunk also goes back
with the chunk's report, to the job's run folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.bundle_store import open_store
from shoal.bundles import KEY_ENV, cluster_key
from shoal.engines._logs import open_log
from shoal.engines.celery.app import ANY_VERSION, INFO_COMMAND, TASK, make_app, queue_name
from shoal.engines.celery.status import Publisher, WorkerStatus, register_commands
from shoal.engines.celery.supervisor import Code, Supervisor
from shoal.engines.celery.versions import Versions
from shoal.environments import project_environment
from shoal.errors import BundleError, FingerprintMismatchError
from shoal.project import Project, load_project
from shoal.wire import JobSpec

if TYPE_CHECKING:
    from celery import Celery, Task

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  #: seconds between a running task's heartbeats


@dataclass(frozen=True)
class Bundles:
    """How a worker without a project gets code: the store, the cluster key, its disk cache."""

    store_url: str | None
    cache: Path
    warm: int = 2
    keep: int = 8
    wheels: str | None = None  #: where requirements are installed from, with no package index


def serve(
    project_dir: str | Path | None,
    broker_url: str,
    *,
    concurrency: int,
    queue: str = "shoal",
    log_dir: Path | None = None,
    loglevel: str = "INFO",
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
    bundles: Bundles | None = None,
) -> None:
    """Run until stopped (SIGTERM lets running chunks finish; SIGINT twice stops at once)."""
    project = load_project(project_dir) if project_dir is not None else None
    key = cluster_key("a worker without a project runs only code signed with it") if project is None else b""
    os.environ.pop(KEY_ENV, None)  # not for the stages' processes, nor a package's build script, to read
    app = make_app(broker_url)
    metrics, endpoint = None, None
    if metrics_port is not None:  # Prometheus scrapes each worker machine directly
        from shoal.metrics.worker import WorkerMetrics

        metrics, endpoint = WorkerMetrics.serve(metrics_port, metrics_host)
    supervisor: Supervisor | Versions
    if project is not None:
        env = project_environment(project.root)
        code = Code.of(project, (str(env),) if env is not None else ())
        supervisor = Supervisor(code, concurrency, log_dir=log_dir, metrics=metrics)
    else:
        bundles = bundles or Bundles(None, Path("shoal-cache"))
        store = open_store(broker_url, bundles.store_url)
        supervisor = Versions(
            store,
            key,
            bundles.cache,
            concurrency,
            warm=bundles.warm,
            keep=bundles.keep,
            wheels=bundles.wheels,
            log_dir=log_dir,
            metrics=metrics,
        )
    register(app, project, supervisor, concurrency=concurrency, queue=queue)
    hostname = f"shoal-{os.getpid()}@{os.uname().nodename}"
    status = WorkerStatus(hostname, app.conf.shoal_info, supervisor, log_dir)
    register_commands(app, status)  # `shoal workers`, the server's Workers page
    publisher = Publisher(broker_url, status)
    supervisor.start()
    publisher.start()
    if loglevel == "INFO":  # Celery logs every task's return value at INFO: whole reports, too much
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    try:
        worker = app.Worker(
            pool_cls="threads",
            concurrency=concurrency,
            queues=[app.conf.shoal_info["queue"]],
            hostname=hostname,
            loglevel=loglevel,
            without_mingle=True,  # start in a second, not three; revokes still reach live workers
            without_gossip=True,
        )
        if log_dir is not None:  # after Celery set up logging, so the console keeps its own
            _log_to_file(log_dir)
        worker.start()
    finally:
        publisher.close()
        supervisor.close()
        if endpoint is not None:
            endpoint.close()


def _log_to_file(folder: Path) -> None:
    """This process's log records (and, once Celery redirects them, its prints) go to its own file
    as well, beside its supervisor's processes' files."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.StreamHandler(os.fdopen(open_log(folder), "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/%(threadName)s] %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def register(
    app: Celery, project: Project | None, supervisor: Supervisor | Versions, *, concurrency: int, queue: str
) -> None:
    """The chunk task and the `shoal_info` control command, bound to this worker's project (or, with
    none, to the bundles it fetches)."""
    from celery.worker.control import inspect_command

    fingerprint = project.fingerprint if project is not None else ANY_VERSION
    app.conf.shoal_info = {
        "project": project.spec if project is not None else None,
        "pipeline": project.pipeline.name if project is not None else None,
        "fingerprint": project.fingerprint if project is not None else None,
        "concurrency": concurrency,
        "queue": queue_name(queue, fingerprint),
        "pid": os.getpid(),
    }

    @inspect_command(name=INFO_COMMAND)  # type: ignore[untyped-decorator]
    def shoal_info(state: Any) -> dict[str, Any]:
        """Which code this worker runs, for `shoal run` to match against its job."""
        return {**state.consumer.app.conf.shoal_info, "loaded": supervisor.loaded}

    @app.task(name=TASK, bind=True)  # type: ignore[untyped-decorator]
    def run_chunk(task: Task, job: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        spec = JobSpec.from_dict(job)
        if project is not None and spec.fingerprint != project.fingerprint:
            raise FingerprintMismatchError(
                f"worker {task.request.hostname} runs version {project.fingerprint} of {project.root}, "
                f"job {spec.job_id} needs {spec.fingerprint}"
            )
        try:
            with _heartbeat(task, supervisor):
                worker, report = supervisor.run(spec, items)
        except BundleError as exc:  # no item can run here: the job hears why, and fails at once
            log.error("shoal: job %s: %s", spec.job_id, exc)
            return {"worker": task.request.hostname, "refused": str(exc)}
        return {"worker": worker, **report.to_dict()}


class _heartbeat:
    """Post PROGRESS with a beat counter every HEARTBEAT_S while a task runs and the supervisor
    can run it: beats from a worker whose supervisor died would hide a chunk that never ends.

    Celery keeps a task's request per thread, and this thread has none of its own: without the
    task's request a state has no address (RabbitMQ's replies go to the request's ``reply_to``),
    so the beats would vanish and every chunk running past LOST_AFTER be declared lost."""

    def __init__(self, task: Task, supervisor: Supervisor | Versions) -> None:
        self.backend = task.backend
        self.supervisor = supervisor
        self.request = task.request  # read on the task's own thread, where it is the task's
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="shoal-heartbeat", daemon=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _beat(self) -> None:
        beat, failing = 0, False
        while not self.done.wait(HEARTBEAT_S if beat else 0.0):
            if not self.supervisor.healthy:
                continue  # silence: the coordinator declares the chunk lost and sends it elsewhere
            beat += 1
            try:
                meta = {"beat": beat, "at": time.time()}
                self.backend.store_result(self.request.id, meta, "PROGRESS", request=self.request)
                failing = False
            except Exception as exc:  # a broker hiccup must not fail the chunk; the next beat tries again
                if not failing:
                    log.warning("shoal: heartbeat of task %s failed (%s); trying again", self.request.id, exc)
                failing = True
