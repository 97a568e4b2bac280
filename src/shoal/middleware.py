"""Hooks around a run, for what is not the coordinator's business: progress bars, metrics, logs.

Every hook does nothing by default; subclass and override the ones you need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.store import JobRecord
    from shoal.wire import Report


@dataclass
class Progress:
    """Counts of a running job; ``total`` grows while the inputs are still being read."""

    total: int = 0
    done: int = 0  #: succeeded
    failed: int = 0
    retries: int = 0  #: attempts that failed and were retried
    in_flight: int = 0
    ingested: bool = False  #: every input entry is known, so total is final
    stopping: bool = False  #: asked to stop: items in flight are settling
    started: float = 0.0  #: time.monotonic() when this run began
    done_at_start: int = 0  #: items already finished when this run began (a resumed job)
    workers_alive: int | None = None  #: live worker processes, where the engine can count them
    workers_busy: int | None = None  #: of those, how many are running an item now
    #: what the workers run now, where the engine can tell: items, stage, seconds, done, total
    running: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.finished)


class Middleware:
    """Base class: override any hook; each is called on the coordinator's thread."""

    def before_run(self, job: JobRecord, workers: int) -> None:
        """The run is about to start its workers."""

    def after_report(self, worker: str, report: Report) -> None:
        """A worker reported finished items (succeeded or failed)."""

    def on_progress(self, progress: Progress) -> None:
        """Called right after before_run (the counts a resumed job starts from), then about ten
        times a second, and once more when the run ends."""

    def after_run(self, job: JobRecord, progress: Progress, outcome: str) -> None:
        """The run ended: ``outcome`` is finished, interrupted or aborted."""


class MiddlewareStack(Middleware):
    """Calls each middleware in order."""

    def __init__(self, members: Sequence[Middleware] = ()) -> None:
        self.members = list(members)

    def before_run(self, job: JobRecord, workers: int) -> None:
        for m in self.members:
            m.before_run(job, workers)

    def after_report(self, worker: str, report: Report) -> None:
        for m in self.members:
            m.after_report(worker, report)

    def on_progress(self, progress: Progress) -> None:
        for m in self.members:
            m.on_progress(progress)

    def after_run(self, job: JobRecord, progress: Progress, outcome: str) -> None:
        for m in self.members:
            m.after_run(job, progress, outcome)
