"""The coordinator's side of the cluster engine: chunks out as Celery tasks, reports back.

Workers are found by asking them (a Celery control command): which code version each runs, how
many threads it has. Tasks go to the queue of the job's code version when workers pinned to it
are there; otherwise to workers started without a project, after the project's code is published
as a bundle signed with the cluster key (see shoal.bundles), which they fetch by fingerprint. Every in-flight chunk is
watched: a running chunk beats a heartbeat each second, so one whose beats stop (its worker was
killed, or its result was lost with a broker restart) is declared lost within LOST_AFTER seconds
and its items are sent again, instead of waiting out a broker's visibility timeout.

What the worker processes wrote while running a chunk comes back in its report; it is appended to
``<log dir>/<host>-<pid>.log``, as the local engine's processes write theirs there themselves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kombu.exceptions import OperationalError

from shoal.engines import Chunk, ChunkLost, Event, ItemsDone, WorkerFailed, WorkerReady
from shoal.engines._logs import Collector
from shoal.engines.celery.app import ANY_VERSION, INFO_COMMAND, TASK, make_app, queue_name
from shoal.engines.celery.results import ResultWatch
from shoal.errors import ConfigError, ShoalError
from shoal.wire import Report

if TYPE_CHECKING:
    from celery import Celery

    from shoal.project import Project

log = logging.getLogger(__name__)
LOST_AFTER = 5.0  #: seconds without a sign of life before an in-flight chunk is sent again
BROKER_GRACE = 120.0  #: seconds the broker may be unreachable before the run gives up
OVERTAKEN_AFTER = 2.0  #: seconds a queued chunk may trail one sent after it before it is presumed lost
DISCOVER_EVERY = 10.0  #: seconds between asking which workers are there
REPLY_WAIT = 0.5  #: seconds a round of asking waits for the workers' replies
FULL_CHECK_EVERY = 0.5  #: seconds between reads of every chunk's state where changes are pushed
PREFETCH = 2  #: chunks in flight per worker thread


@dataclass
class _Flight:
    chunk: Chunk
    task_id: str
    sent: float
    seen: tuple[Any, ...] = ()  #: the last (state, meta) observed
    changed: float = field(default_factory=time.monotonic)
    started: bool = False
    queued: bool = False  #: the broker took it


class CeleryEngine:
    """Chunks as Celery tasks on `shoal worker` processes anywhere the broker reaches."""

    def __init__(
        self,
        broker_url: str,
        *,
        queue: str,
        fingerprint: str,
        pipeline: str,
        discover_timeout: float = 5.0,
        log_dir: Path | None = None,
        project: Project | None = None,
        bundles_url: str | None = None,
    ):
        self.broker_url = broker_url
        self.queue = queue_name(queue, fingerprint)
        self._own_queue = self.queue  #: where workers pinned to this code version listen
        self._base_queue = queue  #: workers on other queues are other pools, whatever code they run
        self._any_queue = queue_name(queue, ANY_VERSION)
        self.project = project  #: published as a bundle when only workers without a project are there
        self.bundles_url = bundles_url
        self.bundle_seconds: float | None = None  #: how long publishing the bundle took
        self._generic = False  #: the job's chunks go to workers without a project
        self.fingerprint = fingerprint
        self.pipeline = pipeline
        self.discover_timeout = discover_timeout
        self._app: Celery | None = None
        self._results: ResultWatch | None = None
        self._next_check = 0.0
        self._threads = 0  #: worker threads serving this code version
        self._flights: dict[int, _Flight] = {}
        self._announced: set[str] = set()
        self._names: list[str] = []  #: workers serving this code version
        self._any: list[tuple[str, dict[str, Any]]] = []  #: workers serving any signed bundle
        self._others: list[tuple[str, dict[str, Any]]] = []  #: workers serving other versions
        self._elsewhere: list[tuple[str, dict[str, Any]]] = []  #: workers listening on other queues
        self._mine: list[tuple[str, dict[str, Any]]] = []  #: workers pinned to this code version
        self._last_activity = time.monotonic()
        self._overtake: tuple[float, float] | None = None  #: (sent, seen) of the latest-sent chunk seen started
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._logs = Collector(log_dir) if log_dir is not None else None

    @property
    def workers(self) -> int:
        return max(1, self._threads)

    @property
    def chunk_seconds(self) -> float:
        return 1.0  # a round trip through the broker and the result store costs tens of milliseconds

    # --- Engine protocol ---------------------------------------------------------------------
    def start(self) -> None:
        if self._app is not None:
            return
        self._app = make_app(self.broker_url)
        self._results = ResultWatch(self._app)
        deadline = time.monotonic() + self.discover_timeout
        try:  # a whole round, not the first reply: the run starts with (and says) how many there are
            found = self._discover()
            while not found and time.monotonic() < deadline:
                time.sleep(0.5)
                found = self._discover()
        except (OperationalError, OSError) as exc:  # nothing was sent: a configuration error, not a crash
            raise ConfigError(
                f"cannot reach the broker at {_safe(self.broker_url)} ({exc}): start it, or point --broker "
                "(or SHOAL_BROKER_URL) at one that runs; without --broker, shoal runs on this machine"
            ) from None
        if not self._threads and self._any:
            self._publish()
            self._generic, self.queue = True, self._any_queue
            self._count()
        if not self._threads:
            raise ConfigError(self._no_workers_message())
        for name, info in self._others:  # not an error: other pools may serve other code
            log.warning(
                "worker %s runs %s version %s from %s, not this run's %s: it gets none of this job's work",
                name, info.get("pipeline"), info.get("fingerprint"), info.get("project"), self.fingerprint,
            )  # fmt: skip
        self._watcher = threading.Thread(target=self._rediscover, name="shoal-discover", daemon=True)
        self._watcher.start()

    def capacity(self) -> int:
        return max(0, PREFETCH * self._threads - len(self._flights))

    def submit(self, chunk: Chunk) -> None:
        flight = _Flight(chunk, f"{chunk.job.job_id}.{chunk.id}.{uuid.uuid4().hex[:8]}", time.monotonic())
        self._flights[chunk.id] = flight
        self._send(flight)

    def poll(self, timeout: float) -> list[Event]:
        assert self._results is not None
        deadline = time.monotonic() + timeout
        events = self._announce()
        if self._logs is not None:
            self._logs.pump()  # what came while the last write was under way
        while True:
            now = time.monotonic()
            if now >= self._next_check:  # every state read: resends, and silent chunks noticed
                events += self._check()
                self._next_check = now + (FULL_CHECK_EVERY if self._results.pushed else 0.0)
            if events or now >= deadline:
                return events
            try:
                changes = self._results.wait(max(0.0, min(deadline, self._next_check) - now))
            except Exception as exc:  # the result store went away: the next full read waits for it
                self._outage(exc)
                self._next_check = 0.0
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                continue
            events += self._heard(changes)

    def stop(self, *, kill: bool = False) -> None:
        self._stop.set()
        if self._app is None:
            return
        if kill and self._flights:  # the coordinator gives up these chunks: spare the workers the work
            self._app.control.revoke([f.task_id for f in self._flights.values()])
        self._flights.clear()
        if self._results is not None:
            self._results.close()
        self._app.close()
        if self._logs is not None:
            self._logs.close()

    # --- watching the chunks -----------------------------------------------------------------
    def _send(self, flight: _Flight) -> None:
        assert self._app is not None
        assert self._results is not None
        job, items = flight.chunk.job.to_dict(), flight.chunk.items
        try:
            self._results.watch(flight.task_id)
            self._app.send_task(TASK, args=[job, items], queue=self.queue, task_id=flight.task_id)
        except Exception as exc:  # the broker is away: keep the chunk and send it when it is back
            self._outage(exc)
            return
        flight.sent, flight.queued = time.monotonic(), True

    def _check(self) -> list[Event]:
        for flight in self._flights.values():
            if not flight.queued:
                self._send(flight)
        watched = [(chunk_id, flight) for chunk_id, flight in self._flights.items() if flight.queued]
        if not watched:
            return []
        assert self._results is not None
        try:
            metas = self._results.states([flight.task_id for _, flight in watched])
        except Exception as exc:
            self._outage(exc)
            return []
        self._recovered()
        return self._judge_all([(chunk_id, meta) for (chunk_id, _), meta in zip(watched, metas, strict=True)])

    def _heard(self, changes: list[tuple[str, dict[str, Any]]]) -> list[Event]:
        """States the result store pushed: judged at once, as a full read would judge them."""
        by_task = {flight.task_id: chunk_id for chunk_id, flight in self._flights.items()}
        return self._judge_all([(by_task[task_id], meta) for task_id, meta in changes if task_id in by_task])

    def _judge_all(self, states: list[tuple[int, dict[str, Any]]]) -> list[Event]:
        events, now = [], time.monotonic()
        for chunk_id, meta in states:
            flight = self._flights.get(chunk_id)
            if flight is None:  # judged already in this round
                continue
            event = self._judge(chunk_id, flight, meta.get("status"), meta.get("result"), now)
            if event is not None:
                events.append(event)
        return events

    def _judge(self, chunk_id: int, flight: _Flight, state: str | None, info: Any, now: float) -> Event | None:
        """What a chunk's task state means: done, lost, or still fine."""
        if (state, _hashable(info)) != flight.seen:
            flight.seen, flight.changed, self._last_activity = (state, _hashable(info)), now, now
        if state == "SUCCESS":
            del self._flights[chunk_id]
            self._unwatch(flight.task_id)
            _forget(self._app, flight.task_id)
            if info.get("refused"):  # the worker cannot run this code at all: no retry helps
                return WorkerFailed(str(info.get("worker", "")), f"worker {info.get('worker')}: {info['refused']}")
            report = Report.from_dict(info)
            if self._logs is not None and report.logs:
                self._logs.add(report.logs)
            return ItemsDone(chunk_id, str(info.get("worker", "")), report)
        if state in ("FAILURE", "REVOKED"):
            return self._lose(chunk_id, f"ended as {state}: {info}")
        if state in ("STARTED", "PROGRESS"):
            if not flight.started:
                flight.started = True
                if self._overtake is None or flight.sent > self._overtake[0]:
                    self._overtake = (flight.sent, now)
            if now - flight.changed > LOST_AFTER:
                return self._lose(chunk_id, f"sent no heartbeat for {LOST_AFTER:g} s: its worker is gone")
            return None
        overtaken = self._overtake is not None and self._overtake[0] > flight.sent
        if overtaken and now - self._overtake[1] > OVERTAKEN_AFTER:  # type: ignore[index]
            return self._lose(chunk_id, "was overtaken by a later chunk: the broker lost it")
        if now - max(flight.sent, self._last_activity) > LOST_AFTER:
            return self._lose(chunk_id, "was never picked up while nothing else moved: the broker lost it")
        return None

    def _lose(self, chunk_id: int, why: str) -> ChunkLost:
        assert self._app is not None
        flight = self._flights.pop(chunk_id)
        self._unwatch(flight.task_id)
        with contextlib.suppress(Exception):  # if it turns up after all, no live worker runs it again
            self._app.control.revoke(flight.task_id)
        return ChunkLost(chunk_id, "", "WorkerLost", f"chunk {flight.task_id} {why}")

    def _unwatch(self, task_id: str) -> None:
        assert self._results is not None
        with contextlib.suppress(Exception):  # a broker outage drops every subscription anyway
            self._results.unwatch(task_id)

    def _outage(self, exc: Exception) -> None:
        """The broker or result store is unreachable: wait for it, up to BROKER_GRACE seconds."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning("lost the broker at %s (%s); waiting for it", _safe(self.broker_url), exc)
        elif now - self._down_since > BROKER_GRACE:
            raise ShoalError(
                f"the broker at {_safe(self.broker_url)} has been unreachable for {BROKER_GRACE:g} s: {exc}"
            )

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        now = time.monotonic()  # an outage is no sign of life or death: start every clock again
        for flight in self._flights.values():
            flight.changed = now
        self._down_since, self._last_activity = None, now
        log.warning("the broker at %s is back", _safe(self.broker_url))

    # --- finding workers ---------------------------------------------------------------------
    def _discover(self) -> bool:
        """Ask the workers which code they run (a round waits out REPLY_WAIT for every reply)."""
        assert self._app is not None
        replies = self._app.control.broadcast(INFO_COMMAND, reply=True, timeout=REPLY_WAIT)
        found = [(name, info) for reply in replies or [] for name, info in reply.items() if isinstance(info, dict)]
        self._elsewhere = [(n, i) for n, i in found if _pool(i) != self._base_queue]  # other pools: not counted
        found = [(n, i) for n, i in found if _pool(i) == self._base_queue]
        self._mine = [(name, info) for name, info in found if info.get("queue") == self._own_queue]
        self._any = [(name, info) for name, info in found if info.get("queue") == self._any_queue]
        self._others = [(n, i) for n, i in found if i.get("fingerprint") not in (self.fingerprint, None)]
        self._count()
        return bool(self._mine or self._any)

    def _count(self) -> None:
        """The threads and names of the workers this job's chunks go to."""
        serving = self._any if self._generic else self._mine
        self._threads = sum(int(info.get("concurrency", 1)) for _, info in serving)
        self._names = [name for name, _ in serving]

    def _publish(self) -> None:
        """Put the project's code where workers without a project fetch it, signed with the key."""
        from shoal.bundle_store import open_store
        from shoal.bundles import cluster_key, make_bundle

        if self.project is None:
            raise ConfigError("the workers here serve any project's bundle, and this run has no project to publish")
        key = cluster_key(
            f"the workers on {_safe(self.broker_url)} were started without a project and run only code signed "
            "with the cluster's key"
        )
        started = time.monotonic()
        blob = make_bundle(self.project, key)
        store = open_store(self.broker_url, self.bundles_url)
        try:
            store.put(self.fingerprint, blob)
        finally:
            store.close()
        self.bundle_seconds = time.monotonic() - started
        log.info(
            "published code bundle %s of %s (%.1f KiB) for workers without a project in %.3f s",
            self.fingerprint, self.project.root, len(blob) / 1024, self.bundle_seconds,
        )  # fmt: skip

    def _rediscover(self) -> None:
        while not self._stop.wait(DISCOVER_EVERY):
            try:
                self._discover()
            except Exception as exc:  # a broker restart: try again on the next round
                log.warning("asking the workers which code they run failed (%s); trying again", exc)

    def _announce(self) -> list[Event]:
        """A WorkerReady the first time each matching worker is seen (the run's start-up time)."""
        fresh = [name for name in self._names if name not in self._announced]
        self._announced.update(fresh)
        return [WorkerReady(name, 0.0) for name in fresh]

    def _no_workers_message(self) -> str:
        elsewhere = ""
        if self._elsewhere:  # said whatever else is wrong: it may be all that is
            queues = sorted({_pool(info) for _, info in self._elsewhere})
            elsewhere = (
                f" Workers on other queues ({', '.join(map(repr, queues))}) get no work of a run on queue "
                f"{self._base_queue!r}: pass --queue to send the job there, or start workers with this run's --queue"
            )
        if self._others:
            versions = "; ".join(
                f"{name} runs {info.get('pipeline')} version {info.get('fingerprint')} from {info.get('project')}"
                for name, info in self._others
            )
            return (
                f"no worker runs pipeline {self.pipeline!r} at version {self.fingerprint} (this project's code): "
                f"{versions}. Deploy this code and restart the workers: shoal worker PROJECT --broker URL.{elsewhere}"
            )
        if self._elsewhere:
            return f"no shoal worker listens on queue {self._base_queue!r} at {_safe(self.broker_url)}.{elsewhere}"
        return (
            f"no shoal worker is listening on {_safe(self.broker_url)}: start one on each machine with "
            f"`shoal worker PROJECT --broker {_safe(self.broker_url)}`"
        )


def _pool(info: dict[str, Any]) -> str:
    """The --queue a worker was started with: its queue without the code-version suffix."""
    return str(info.get("queue", "")).rsplit(".", 1)[0]


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value


def _forget(app: Celery, task_id: str) -> None:
    """Drop a result we have read (a result backend keeps it a day otherwise)."""
    with contextlib.suppress(NotImplementedError):  # RabbitMQ replies are gone once read
        app.backend.forget(task_id)


def _safe(url: str) -> str:
    """A broker URL without its password, for messages."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url
