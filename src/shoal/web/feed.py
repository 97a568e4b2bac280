"""Live progress of the jobs this server runs, from the coordinator's thread to SSE clients.

A Feed is middleware: the coordinator calls on_progress about ten times a second, and the feed
wakes the event loops of waiting clients only when the counts changed, so a client hears of a
finished item within a tenth of a second and an idle job costs nothing. What the workers run now
(an item's frames done, said by its stage) moves on its own, so it is sent at most every
RUNNING_EVERY seconds when nothing else changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from shoal.middleware import Middleware, Progress
from shoal.store import JobRecord

RUNNING_EVERY = 0.5  #: seconds between updates that only move the running items' progress


def snapshot(progress: Progress, state: str) -> dict[str, Any]:
    """What a client is told about a running job."""
    elapsed = time.monotonic() - progress.started if progress.started else 0.0
    rate = (progress.finished - progress.done_at_start) / elapsed if elapsed > 0 else 0.0
    eta = progress.remaining / rate if rate > 0 and progress.ingested else None
    return {
        "state": state,
        "total": progress.total,
        "succeeded": progress.done,
        "failed": progress.failed,
        "pending": progress.remaining,
        "cancelled": 0,
        "in_flight": progress.in_flight,
        "retries": progress.retries,
        "ingested": progress.ingested,
        "stopping": progress.stopping,
        "rate": round(rate, 3),
        "eta_s": None if eta is None else round(eta, 1),
        "running": progress.running if state == "running" else [],
    }


class Feed(Middleware):
    """The latest progress of one job, and a way for async clients to wait for the next."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.snapshot: dict[str, Any] | None = None
        self.version = 0
        self.closed = False
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._key: tuple[Any, ...] = ()
        self._running_key: tuple[Any, ...] = ()
        self._sent = 0.0  #: time.monotonic() of the last publish

    # --- the coordinator's side ----------------------------------------------------------------
    def before_run(self, job: JobRecord, workers: int) -> None:
        self.publish(snapshot(Progress(ingested=job.ingested), "running"))

    def on_progress(self, progress: Progress) -> None:
        key = (progress.total, progress.done, progress.failed, progress.in_flight, progress.stopping)
        running = tuple((r["items"][0], r["stage"], r["done"], r["total"]) for r in progress.running)
        moved = running != self._running_key and time.monotonic() - self._sent >= RUNNING_EVERY
        if key != self._key or moved:
            self._key, self._running_key = key, running
            self.publish(snapshot(progress, "running"))

    def after_run(self, job: JobRecord, progress: Progress, outcome: str) -> None:
        self.publish(snapshot(progress, job.state))

    def publish(self, data: dict[str, Any]) -> None:
        self._sent = time.monotonic()
        with self._lock:
            self.snapshot = data
            self.version += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that client's loop is closed
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """The run is over: wake every client so it looks at the ledger instead."""
        self.closed = True
        self.publish(self.snapshot or {})

    # --- the clients' side ---------------------------------------------------------------------
    async def changed(self, since: int, timeout: float) -> int:
        """Wait until the version differs from ``since`` (or ``timeout`` seconds); returns it."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if self.version != since:
                return self.version
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self.version

    def wake_all(self) -> None:
        """Wake waiting clients (the server is shutting down)."""
        self.publish(self.snapshot or {})
