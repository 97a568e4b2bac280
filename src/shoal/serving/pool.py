"""One pipeline version served online: warm replicas, its batcher, and one thread driving both.

Replicas are worker processes of their own (the embedded engine's), started when the version is
first served and kept warm: online requests never queue behind a batch job's chunks, and a batch
job never waits for them. A batch goes only to a replica that holds nothing (so no request waits
behind another batch in a pipe), and holds inputs of this one version only. A replica that dies
running a batch is replaced; the inputs it was running fail with the reason, the others of that
batch are sent again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal._json import loads
from shoal.engines import Chunk, ChunkLost, ItemsDone, WorkerFailed, WorkerReady
from shoal.engines.local import LocalEngine
from shoal.errors import DeadlineError, OverloadedError, ServingUnavailableError
from shoal.project import Project
from shoal.serving.batcher import Batcher, BatchPolicy, Waiting
from shoal.serving.config import MAX_REPLICAS
from shoal.serving.metrics import ServingMetrics
from shoal.wire import JobSpec, WireItem

log = logging.getLogger(__name__)
IDLE_TICK_S = 1.0  #: the driving thread's longest sleep with nothing due


class RetiredError(ServingUnavailableError):
    """This version stopped taking requests (a newer one serves): ask the pipeline again."""


@dataclass
class Request:
    """One predict call: its inputs' answers fill in as their batches finish."""

    inputs: list[WireItem]
    arrived: float
    deadline: float
    future: Future[list[dict[str, Any]]] = field(default_factory=Future)
    answers: list[dict[str, Any] | None] = field(default_factory=list)
    left: int = 0

    def __post_init__(self) -> None:
        self.answers = [None] * len(self.inputs)
        self.left = len(self.inputs)

    def answer(self, index: int, outcome: dict[str, Any]) -> None:
        if self.answers[index] is not None or self.future.done():
            return
        self.answers[index] = outcome
        self.left -= 1
        if self.left == 0:
            with contextlib.suppress(InvalidStateError):  # its caller gave up meanwhile
                self.future.set_result([a for a in self.answers if a is not None])

    def fail(self, error: Exception) -> None:
        with contextlib.suppress(InvalidStateError):
            self.future.set_exception(error)


class Traffic:
    """What one version answered: inputs, failures, and recent latencies (for p50/p99)."""

    def __init__(self, keep: int = 2000) -> None:
        self.answered = 0
        self.failed = 0
        self.latencies: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, ok: bool, seconds: float) -> None:
        with self._lock:
            self.answered += 1
            self.failed += not ok
            self.latencies.append(seconds)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            ordered = sorted(self.latencies)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "answered": self.answered,
            "failed": self.failed,
            "error_rate": self.failed / self.answered if self.answered else None,
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        }


@dataclass
class _Sent:
    entries: dict[str, Waiting]  #: by the item id the replica knows
    sent: float
    size: int


class ReplicaPool:
    """Warm replicas of one pipeline version and the batches they run."""

    def __init__(
        self,
        project: Project,
        replicas: int,
        policy: BatchPolicy,
        spec: JobSpec,
        *,
        log_dir: Path | None = None,
        python_path: tuple[str, ...] = (),
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.project = project
        self.version = project.fingerprint
        self.policy = policy
        self.spec = spec
        self.metrics = metrics
        self.engine = LocalEngine(
            Path(project.spec),
            project.fingerprint,
            replicas,
            log_dir=log_dir,
            python_path=python_path,
            capacity=MAX_REPLICAS,
        )
        self.size = replicas  #: replicas asked for (the engine follows on the driving thread)
        self.ready_count = 0  #: replicas ready, as the driving thread last saw (read from any thread)
        self.alive_count = replicas  #: replica processes running, leaving ones included
        self._resize_to: int | None = None
        self.batcher = Batcher(policy)
        self.traffic = Traffic()
        self.started = time.monotonic()
        self.load_seconds: float | None = None
        self.failure: str | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._sent: dict[int, _Sent] = {}
        self._solo: deque[Waiting] = deque()  #: members of a batch that failed as a whole, to run alone
        self._ids = itertools.count(1)
        self._chunks = itertools.count(1)
        self._closing = False
        self.retiring = False  #: a newer version took over: answer what is held, take nothing new
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._labels = (project.pipeline.name, project.fingerprint)
        self._thread = threading.Thread(target=self._drive, name=f"shoal-serve-{project.pipeline.name}", daemon=True)
        self._thread.start()

    # --- callers' side -----------------------------------------------------------------------
    def submit(self, inputs: list[WireItem], timeout_s: float) -> Future[list[dict[str, Any]]]:
        """Queue a request's inputs; its future gets one answer per input, in order."""
        now = time.monotonic()
        request = Request(inputs, now, now + timeout_s)
        with self._lock:
            if self.retiring or self._closing:
                raise RetiredError(f"version {self.version} no longer takes requests")
            if self.failure is not None:
                raise ServingUnavailableError(self.failure)
            if self.batcher.room() < len(inputs):
                raise OverloadedError(self._overload_reason(len(inputs)), self._drain_estimate())
            slo = self.policy.latency_slo_ms
            if slo is not None and (expected := self.batcher.refuses(len(inputs), self._busy(now))) is not None:
                raise OverloadedError(self._slo_reason(expected), expected - slo / 1000)
            cost = self.policy.cost
            self.batcher.add(
                [Waiting(now, (request, n, wire), _cost(cost, wire), request.deadline) for n, wire in enumerate(inputs)]
            )
            self._gauge_queue()
        self._wake()
        return request.future

    def wait_ready(self, timeout: float) -> bool:
        """Whether a replica is ready within ``timeout`` seconds (or the version failed)."""
        return self._ready.wait(timeout)

    @property
    def ready_replicas(self) -> int:
        return self.ready_count

    def resize(self, replicas: int) -> None:
        """Run this many replicas: new ones warm, the ones beyond it finish their batch and exit."""
        self.size = replicas
        self._resize_to = replicas
        self._wake()

    def close(self) -> None:
        """Stop taking requests; those waiting get 503; replicas finish their batch and exit."""
        self._closing = True
        self._wake()
        self._thread.join(30)
        self.engine.stop()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self.metrics is not None:  # a version no longer served has no queue or replicas to show
            for family in (self.metrics.queue, self.metrics.replicas):
                with contextlib.suppress(KeyError):
                    family.remove(*self._labels)

    def drained(self) -> bool:
        """Nothing waits and nothing runs: the version can stop without dropping a request."""
        with self._lock:
            return not self.batcher.waiting and not self._sent and not self._solo

    def stats(self) -> dict[str, Any]:
        fitted = self.batcher.times.fit()
        return {
            "version": self.version,
            "replicas": self.size,
            "ready": self.ready_count,
            "alive": self.alive_count,
            "waiting": len(self.batcher),
            "running_batches": len(self._sent),
            "arrival_rate": round(self.batcher.rate, 3),
            "batch_time_fit": {"a_s": fitted[0], "b_s": fitted[1]} if fitted else None,
            "load_seconds": self.load_seconds,
            "failure": self.failure,
            **self.traffic.summary(),
        }

    def _overload_reason(self, asked: int) -> str:
        return (
            f"pipeline {self.project.pipeline.name!r} is overloaded: {len(self.batcher)} inputs wait "
            f"(the limit is {self.policy.max_queue}) and this request brings {asked}; try again shortly"
        )

    def _slo_reason(self, expected: float) -> str:
        return (
            f"pipeline {self.project.pipeline.name!r} is overloaded: this request would be answered in about "
            f"{expected * 1000:.0f} ms ({len(self.batcher)} inputs wait), past latency_slo_ms "
            f"{self.policy.latency_slo_ms:g}; try again shortly"
        )

    def _busy(self, now: float) -> list[float]:
        """Each ready replica's seconds left on the batch it runs, by the fitted batch time."""
        a, b = self.batcher.times.fit() or (0.0, 0.0)  # fitted once, not once per running batch
        left = [max(s.sent + a + b * s.size - now, 0.0) for s in self._sent.values()]
        return left + [0.0] * max(self.ready_count - len(left), 0) or [0.0]

    def _drain_estimate(self) -> float:
        per_batch = self.batcher.times.predict(self.policy.max_batch_size) or 0.1
        batches = len(self.batcher) / self.policy.max_batch_size
        return max(per_batch * batches / max(self.ready_count, 1), 0.05)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already woken (the pipe is full), or closed
            os.write(self._wake_w, b"x")

    # --- the driving thread ------------------------------------------------------------------
    def _drive(self) -> None:
        self.engine.start()
        while not self._closing:
            events = self.engine.poll(self._sleep(), wake=self._wake_r)
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass
            if self._resize_to is not None:
                self.engine.resize(self._resize_to)
                self._resize_to = None
            with self._lock:
                for event in events:
                    self._handle(event)
                self.ready_count, self.alive_count = self.engine.ready(), self.engine.alive()
                self._expire(time.monotonic())
                self._dispatch(time.monotonic())
                self._gauge_queue()
        with self._lock:
            self._fail_all("the server is stopping this version")

    def _sleep(self) -> float:
        """Until the next thing to do: a held batch falling due (only while a replica is idle to
        take it; else the replica's answer wakes the poll), or a waiting input's deadline."""
        idle = self.engine.idle() > 0
        with self._lock:
            due = self.batcher.wake_at(time.monotonic()) if idle else None
            deadlines = [w.deadline for w in itertools.islice(self.batcher.waiting, 64)]
        now = time.monotonic()
        nearest = min([due or now + IDLE_TICK_S, *deadlines, now + IDLE_TICK_S])
        return max(0.0, nearest - now)

    def _handle(self, event: Any) -> None:
        if isinstance(event, WorkerReady):
            if self.load_seconds is None:
                self.load_seconds = time.monotonic() - self.started
                if self.metrics is not None:
                    self.metrics.load_seconds.labels(*self._labels).set(self.load_seconds)
            self._ready.set()
        elif isinstance(event, WorkerFailed):
            if self.engine.ready() == 0:
                self.failure = f"pipeline {self.project.pipeline.name!r} cannot serve: {event.message}"
                log.error("%s", self.failure)
                self._fail_all(self.failure)
                self._ready.set()
        elif isinstance(event, ItemsDone):
            self._done(event)
        elif isinstance(event, ChunkLost):
            self._lost(event)
        if self.metrics is not None:
            self.metrics.replicas.labels(*self._labels).set(self.engine.ready())

    def _dispatch(self, now: float) -> None:
        while self.failure is None and self.engine.idle() > 0:
            batch = [self._solo.popleft()] if self._solo else self.batcher.take(now)
            if not batch:
                return
            entries: dict[str, Waiting] = {}
            items = []
            for entry in batch:
                item_id = f"p{next(self._ids)}"
                entries[item_id] = entry
                items.append({**entry.payload[2], "id": item_id})
            chunk = Chunk(next(self._chunks), self.spec, items)
            self._sent[chunk.id] = _Sent(entries, now, len(entries))
            self.engine.submit(chunk)
            if self.metrics is not None:
                self.metrics.batch_size.labels(*self._labels).observe(len(batch))
                self.metrics.batch_wait.labels(*self._labels).observe(now - min(e.arrived for e in batch))

    def _done(self, event: ItemsDone) -> None:
        sent = self._sent.get(event.chunk_id)
        if sent is None:
            return
        for row in event.report.ok:
            entry = sent.entries.pop(row[0], None)
            if entry is not None:
                self._answer(entry, {"ok": True, "result": loads(row[1]), "seconds": loads(row[4] or "{}")})
        for failure in event.report.failed:
            entry = sent.entries.pop(failure["id"], None)
            if entry is None:
                continue
            if failure["error"].get("batch", 1) > 1:
                self._solo.append(entry)  # its batch raised as a whole: run each alone to find the culprit
                continue
            error = {k: failure["error"][k] for k in ("stage", "type", "message")}
            self._answer(entry, {"ok": False, "error": error})
        if not sent.entries:
            del self._sent[event.chunk_id]
            size = len(event.report.ok) + len(event.report.failed)
            took = time.monotonic() - sent.sent
            self.batcher.measured(max(size, 1), took)
            if self.metrics is not None:
                self.metrics.batch_seconds.labels(*self._labels).observe(took)

    def _lost(self, event: ChunkLost) -> None:
        sent = self._sent.pop(event.chunk_id, None)
        if sent is None:
            return
        again = []
        for item_id, entry in sent.entries.items():
            if item_id in event.suspects or not event.suspects:
                self._answer(entry, {"ok": False, "error": {"stage": "", "type": event.kind, "message": event.message}})
            else:
                again.append(entry)
        self.batcher.waiting.extendleft(reversed(again))  # not to blame: first in line again

    def _answer(self, entry: Waiting, outcome: dict[str, Any]) -> None:
        request, index, _ = entry.payload
        request.answer(index, {**outcome, "version": self.version})
        self.traffic.add(outcome["ok"], time.monotonic() - request.arrived)
        if self.metrics is not None:
            self.metrics.inputs.labels(*self._labels, "ok" if outcome["ok"] else "failed").inc()

    def _expire(self, now: float) -> None:
        for entry in self.batcher.expired(now):
            request = entry.payload[0]
            if not request.future.done():
                self.traffic.add(False, now - request.arrived)
                request.fail(
                    DeadlineError(
                        f"no answer within the request's deadline of {request.deadline - request.arrived:g} s: "
                        f"its inputs were still queued ({len(self.batcher)} waiting)"
                    )
                )

    def _fail_all(self, message: str) -> None:
        for entry in self.batcher.waiting:
            request = entry.payload[0]
            if not request.future.done():
                request.fail(ServingUnavailableError(message))
        self.batcher.waiting.clear()

    def _gauge_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue.labels(*self._labels).set(len(self.batcher))


def _cost(cost: Any, wire: WireItem) -> float:
    if cost is None:
        return 1.0
    try:
        return float(cost(wire))
    except Exception:
        return 1.0
