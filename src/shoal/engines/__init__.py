"""Engines: how chunks of items reach workers.

An engine only moves work and reports what happened; the coordinator decides what it means
(retry, isolate, fail). Every engine passes the same conformance tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shoal.errors import ConfigError
from shoal.wire import JobSpec, Report, WireItem

if TYPE_CHECKING:
    from shoal.engines.local import LocalEngine
    from shoal.project import Project
    from shoal.settings import RunSettings


@dataclass
class Chunk:
    """Items of one job sent to one worker together, to amortise the cost of a message."""

    id: int
    job: JobSpec
    items: list[WireItem]


@dataclass
class WorkerReady:
    """A worker finished importing the project and running setup()."""

    worker: str
    startup_s: float  #: seconds from spawn to ready


@dataclass
class ItemsDone:
    """Some items of a chunk finished (a worker reports as it goes)."""

    chunk_id: int
    worker: str
    report: Report


@dataclass
class ChunkLost:
    """A worker died or was killed holding this chunk; ``suspects`` were running at the time."""

    chunk_id: int
    worker: str
    kind: str  #: "Timeout" or "WorkerCrashed"
    message: str
    stage: int = -1  #: index of the stage the suspects were in
    suspects: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  #: as Report.logs: what the worker wrote, if carried


@dataclass
class WorkerFailed:
    """A worker could not start (import error, setup() failed, wrong code version): fatal."""

    worker: str
    message: str


Event = WorkerReady | ItemsDone | ChunkLost | WorkerFailed


def describe_loss(event: ChunkLost, stage_names: list[str]) -> tuple[str, str]:
    """The stage and the message recorded for the items running when a worker died or hung."""
    stage = stage_names[event.stage] if 0 <= event.stage < len(stage_names) else ""
    if event.kind == "Timeout":
        return stage, f"timed out: stage {stage!r} {event.message}" if stage else f"timed out: {event.message}"
    return stage, f"worker crashed: {event.message}" + (f" while running stage {stage!r}" if stage else "")


class Engine(Protocol):
    """The coordinator's view of a pool of workers."""

    def start(self) -> None:
        """Begin starting workers (or connecting to them); returns at once; idempotent."""

    def capacity(self) -> int:
        """How many more chunks may be submitted now."""

    def submit(self, chunk: Chunk) -> None:
        """Hand a chunk to a worker."""

    def poll(self, timeout: float) -> list[Event]:
        """Wait up to ``timeout`` seconds for something to happen."""

    def stop(self, *, kill: bool = False) -> None:
        """Let workers finish and exit, or kill them at once."""

    @property
    def workers(self) -> int:
        """How many workers are configured."""

    @property
    def chunk_seconds(self) -> float:
        """About how much work one chunk should hold: more where a round trip costs more."""


@dataclass(frozen=True)
class Census:
    """How many workers an engine has right now, for progress displays and metrics."""

    alive: int  #: worker processes running (starting or ready)
    busy: int  #: of them, running an item at this moment


@runtime_checkable
class CountsWorkers(Protocol):
    """An engine that can count its live and busy workers cheaply (about ten times a second)."""

    def census(self) -> Census:
        """The workers' state now."""


@runtime_checkable
class ShowsRunning(Protocol):
    """An engine that can say, cheaply, which items each of its processes runs right now."""

    def running(self) -> list[dict[str, Any]]:
        """A row per process: ``job``, ``items`` (ids), ``stage`` (index), ``seconds``, ``done``,
        ``total`` (the stage's own progress; 0 where not said)."""


ENGINES = ("local", "celery")


def local_engine(
    settings: RunSettings,
    spec: str,
    fingerprint: str,
    *,
    log_dir: Path | None = None,
    log_later: bool = False,
    fork: bool = False,
) -> LocalEngine:
    """Workers on this machine for the project at ``spec`` (its folder, or script.py:function),
    version ``fingerprint``; it need not be imported here (see shoal.prestart). ``fork``: the
    first workers may be forked from this process, which has imported no project's code."""
    from shoal.engines.local import LocalEngine
    from shoal.environments import project_environment
    from shoal.project import folder_of

    env = project_environment(folder_of(spec))
    python_path = (str(env),) if env is not None else ()
    return LocalEngine(
        Path(spec),
        fingerprint,
        settings.workers,
        log_dir=log_dir,
        python_path=python_path,
        log_later=log_later,
        fork=fork,
    )


def create_engine(
    settings: RunSettings, project: Project, *, log_dir: Path | None = None, log_later: bool = False
) -> Engine:
    """The engine named by the settings: ``local`` (the default) runs workers on this machine.
    ``log_later``: its workers start before their log folder is known (see LocalEngine.log_to)."""
    name = settings.engine_name
    if name == "local":
        return local_engine(settings, project.spec, project.fingerprint, log_dir=log_dir, log_later=log_later)
    if name == "celery":
        if not settings.broker_url:
            raise ConfigError("the celery engine needs a broker: --broker URL or SHOAL_BROKER_URL")
        from shoal.engines.celery.engine import CeleryEngine

        return CeleryEngine(
            settings.broker_url,
            queue=settings.queue,
            fingerprint=project.fingerprint,
            pipeline=project.pipeline.name,
            log_dir=log_dir,  # the workers' output, carried back with their reports, is collected here
            project=project,  # published as a signed bundle for workers started without one
            bundles_url=settings.bundles_url,
        )
    raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
