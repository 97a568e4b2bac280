"""Live progress for `shoal run`: a Rich bar on a terminal, a plain line now and then otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shoal.middleware import Middleware
from shoal.middleware import Progress as Counts
from shoal.store import JobRecord

PLAIN_EVERY = 10.0  #: seconds between plain progress lines when not on a terminal
SHOWN = 3  #: running items whose own progress the line shows at most


def rate(counts: Counts) -> float:
    """Items finished per second in this run."""
    elapsed = time.monotonic() - counts.started
    return (counts.finished - counts.done_at_start) / elapsed if elapsed > 0 else 0.0


def eta(counts: Counts) -> str:
    speed = rate(counts)
    if not counts.ingested or speed <= 0:
        return "?"
    seconds = int(counts.remaining / speed)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe(counts: Counts) -> str:
    total = f"{counts.total}" if counts.ingested else f"{counts.total}+"
    line = f"{counts.done} done, {counts.failed} failed, {total} total, {rate(counts):.1f} items/s, ETA {eta(counts)}"
    now = running_now(counts)
    return f"{line}; {now}" if now else line


def running_now(counts: Counts) -> str:
    """The running items that say how far they have got (item.progress), e.g. a video's frames."""
    said = [r for r in counts.running if r["total"] > 0 or r["done"] > 0]
    parts = [f"{r['items'][0]} {r['stage']} {_count(r)}" for r in said[:SHOWN]]
    more = f" +{len(said) - SHOWN} more" if len(said) > SHOWN else ""
    return ", ".join(parts) + more


def _count(row: dict[str, Any]) -> str:
    return f"{row['done']}/{row['total']}" if row["total"] else str(row["done"])


class BarProgress(Middleware):
    """A Rich progress bar on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[rate]:.1f} items/s  ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[now]}"),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("starting", total=None, done=0, failed=0, rate=0.0, eta="?", now="")

    def before_run(self, job: JobRecord, workers: int) -> None:
        self.bar.update(self.task, description=f"{job.id} ({workers} workers)")
        self.bar.start()

    def on_progress(self, progress: Counts) -> None:
        self.bar.update(
            self.task,
            completed=progress.finished,
            total=progress.total if progress.ingested else None,
            done=progress.done,
            failed=progress.failed,
            rate=rate(progress),
            eta=eta(progress),
            now=running_now(progress),
            description="stopping: settling items in flight (Ctrl-C again to stop now)" if progress.stopping else None,
        )

    def after_run(self, job: JobRecord, progress: Counts, outcome: str) -> None:
        self.on_progress(progress)
        self.bar.stop()


class LineProgress(Middleware):
    """A line every PLAIN_EVERY seconds, for logs and pipes."""

    def __init__(self, stream: IO[str] = sys.stderr, every: float = PLAIN_EVERY) -> None:
        self.stream = stream
        self.every = every
        self.last = 0.0
        self.stopping = False

    def before_run(self, job: JobRecord, workers: int) -> None:
        self._say(f"running job {job.id} on {workers} workers")
        self.last = time.monotonic()

    def on_progress(self, progress: Counts) -> None:
        if progress.stopping and not self.stopping:
            self.stopping = True
            self._say("stopping: settling items in flight (interrupt again to stop now)")
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._say(describe(progress))

    def after_run(self, job: JobRecord, progress: Counts, outcome: str) -> None:
        self._say(f"{outcome}: {describe(progress)}")

    def _say(self, text: str) -> None:
        print(f"shoal: {text}", file=self.stream, flush=True)
