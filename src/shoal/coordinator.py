"""The coordinator: the single writer of a job's ledger rows and the judge of every outcome.

It reads inputs a batch at a time, hands chunks to the engine within a bounded window, and
decides what each outcome means: success, a retry after backoff, a batch to split so one bad
item cannot fail its neighbours, or a final failure with a cause.

Writes are batched in a WriteBuffer, which forgets rows only once the ledger has them: the job's
input watermark only moves past entries whose rows are written, so a coordinator killed (or a
ledger that refused a write) leaves those entries to be read again by the next run.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from shoal._json import dumps, loads
from shoal.engines import (
    Chunk,
    ChunkLost,
    CountsWorkers,
    Engine,
    Event,
    ItemsDone,
    ShowsRunning,
    WorkerFailed,
    WorkerReady,
    describe_loss,
)
from shoal.errors import JobBusyError, LedgerWriteError, WorkerStartError
from shoal.middleware import Middleware, Progress
from shoal.pipeline import Pipeline
from shoal.sources import Entry
from shoal.sources._ids import safe_text
from shoal.sources.feeds import Feed
from shoal.store import JobRecord, Ledger
from shoal.store.rows import INPUT, SEQ, failure_row, item_head
from shoal.wire import JobSpec, WireItem
from shoal.write_buffer import WriteBuffer

INGEST_BATCH = 2000  #: input entries read per step
READ_AHEAD = 32768  #: items read ahead of dispatch while waiting for workers
MAX_CHUNK = 4096  #: items per chunk, for the cheapest items
SHOWN_RUNNING = 32  #: processes whose current items progress displays show at most
SHOWN_ITEMS = 8  #: ids of one process's current items shown at most (a batch may hold hundreds)
ITEM_OVERHEAD_S = 2e-5  #: per-item cost of dispatch, added to measured stage time
COMMIT_EVERY = 0.2  #: seconds between ledger commits
HEARTBEAT_EVERY = 5.0  #: seconds; commit at least this often so others see the run is alive
TICK = 0.1  #: seconds between progress updates
STREAM_TICK = 0.02  #: seconds; with a stream open, look for new entries at least this often
MAX_BACKOFF = 300.0  #: seconds
MAX_LOSSES = 3  #: times an item may be lost with a dying worker before it is blamed


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2  #: attempts after the first
    backoff: float = 1.0  #: seconds before the first retry; doubles each time

    def delay(self, attempt: int) -> float:
        return float(min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)))


class Coordinator:
    """Runs one job to completion (or until asked to stop) on an engine."""

    def __init__(
        self,
        ledger: Ledger,
        job: JobRecord,
        engine: Engine,
        spec: JobSpec,
        pipeline: Pipeline,
        feed: Feed,
        *,
        policy: RetryPolicy = RetryPolicy(),
        middleware: Middleware | None = None,
        settle_s: float = 5.0,
        owner: str | None = None,
        retry: bool = False,
    ) -> None:
        self.ledger, self.job, self.engine, self.spec = ledger, job, engine, spec
        self.stage_names = [s.name for s in pipeline.stages]
        self.group = pipeline.group_size
        self.policy = policy
        self.middleware = middleware or Middleware()
        self.settle_s = settle_s
        self.retry = retry  #: a retry of failed items: each gets its retries again, counted from now
        self._source = feed  #: kept after it ends, to acknowledge the last entries
        self._feed: Feed | None = None if job.ingested else feed  #: None once every entry has been read
        self._next_seq = job.entries
        self._resume_after: int | None = -1  #: ledger seq cursor while re-reading pending items
        self._maybe_known = ledger.has_items(job.id)  #: the ledger may hold items the inputs repeat
        self._buffer = WriteBuffer(ledger, job.id, job.num, owner)
        self._duplicates: deque[int] = deque()  #: positions of repeated entries not yet counted in the ledger
        self._dry = False  #: the inputs had nothing ready at the last look
        self._ready: deque[WireItem] = deque()
        self._solo: deque[WireItem] = deque()  #: items that must run alone (their batch failed)
        self._delayed: list[tuple[float, int, WireItem]] = []  #: retries waiting out their backoff
        self._inflight: dict[int, dict[str, WireItem]] = {}
        self._isolated: set[str] = set()
        self._losses: Counter[str] = Counter()
        self._chunk_ids = itertools.count(1)
        self._ticket = itertools.count()
        self._item_s: float | None = None  #: moving average of an item's stage seconds
        self._last_commit = self._last_tick = time.monotonic()
        self._stop_at: float | None = None
        self._writable = True
        self.startup_s: float | None = None
        self.progress = Progress(ingested=job.ingested)
        self._census = engine.census if isinstance(engine, CountsWorkers) else None
        self._running = engine.running if isinstance(engine, ShowsRunning) else None

    # --- control -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop dispatching; let items in flight finish for up to settle_s seconds."""
        if self._stop_at is None:
            self._stop_at = time.monotonic() + self.settle_s
            self.progress.stopping = True

    def request_abort(self) -> None:
        """Stop now; items in flight stay pending for the next run."""
        self._stop_at = time.monotonic()
        self.progress.stopping = True

    @property
    def stopping(self) -> bool:
        return self._stop_at is not None

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> str:
        """Process the job; returns "finished" or "interrupted"."""
        counts = self.ledger.counts(self.job.id)
        p = self.progress
        p.started, p.done, p.failed = time.monotonic(), counts["succeeded"], counts["failed"]
        p.total = sum(counts.values())
        p.done_at_start = p.finished
        self.middleware.before_run(self.job, self.engine.workers)
        self.middleware.on_progress(p)  # the counts this run starts from, before any item finishes
        self.engine.start()
        outcome = "aborted"
        try:
            outcome = self._loop()
        except (LedgerWriteError, JobBusyError):
            self._writable = False  # the ledger refused us: nothing more can be recorded by this run
            raise
        finally:
            self.engine.stop(kill=outcome != "finished")
            try:
                if self._writable:
                    self._commit(final=True)
            finally:
                self._source.close()
                self.middleware.on_progress(p)
        return outcome

    def _loop(self) -> str:
        while True:
            now = time.monotonic()
            if self._stop_at is not None:
                if not self._inflight or now >= self._stop_at:
                    return "interrupted"
            else:
                self._fill()
                self._release_due(now)
                self._dispatch()
                if self._drained():
                    return "finished"
            if self._idle_on_feed():
                self._ingest(wait=TICK)  # nothing to run and nothing running: wait on the inputs
            read_ahead = self._can_read_ahead()
            events = self.engine.poll(0.0 if read_ahead or self._idle_on_feed() else self._wait(now))
            for event in events:
                self._handle(event)
            if read_ahead and not events:
                self._ingest()  # nothing to do but wait: read inputs ahead instead
            self._housekeeping()

    def _can_read_ahead(self) -> bool:
        return (
            self._stop_at is None
            and self._resume_after is None
            and self._feed is not None
            and not self._feed.streaming  # a stream is waited on, not polled
            and not self._dry
            and len(self._ready) < READ_AHEAD
        )

    def _idle_on_feed(self) -> bool:
        """Nothing to run and nothing running: wait on the inputs themselves for the next entries."""
        return (
            self._stop_at is None
            and self._resume_after is None
            and self._feed is not None
            and not (self._ready or self._solo or self._delayed or self._inflight)
        )

    def _housekeeping(self) -> None:
        now = time.monotonic()
        since = now - self._last_commit
        if self._buffer.due(now, since, COMMIT_EVERY) or since >= HEARTBEAT_EVERY:
            self._commit()
        if now - self._last_tick >= TICK:
            self.progress.in_flight = sum(len(c) for c in self._inflight.values())
            if self._census is not None:
                census = self._census()
                self.progress.workers_alive, self.progress.workers_busy = census.alive, census.busy
            if self._running is not None:
                self.progress.running = self._running_now(self._running())
            self.middleware.on_progress(self.progress)
            self._last_tick = now

    def _running_now(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This job's items in the workers' hands now, by stage name, longest running first."""
        mine = [r for r in rows if r.get("job") == self.job.id and r.get("items")]
        mine.sort(key=lambda r: -r["seconds"])
        names = self.stage_names
        return [
            {
                "items": r["items"][:SHOWN_ITEMS],
                "count": len(r["items"]),
                "stage": names[r["stage"]] if 0 <= r["stage"] < len(names) else None,
                "seconds": r["seconds"],
                "done": r["done"],
                "total": r["total"],
            }
            for r in mine[:SHOWN_RUNNING]
        ]

    def _drained(self) -> bool:
        return (
            self._feed is None
            and self._resume_after is None
            and not (self._ready or self._solo or self._delayed or self._inflight)
        )

    def _wait(self, now: float) -> float:
        wait = STREAM_TICK if self._feed is not None and (self._feed.streaming or self._dry) else TICK
        if self._delayed:
            return min(wait, max(0.0, self._delayed[0][0] - now))
        return wait

    # --- reading inputs ----------------------------------------------------------------------
    def _fill(self) -> None:
        """Keep enough items ready to fill every worker's window."""
        want = self.engine.workers * 2 * MAX_CHUNK
        while len(self._ready) < want:
            if self._resume_after is not None:
                self._resume_page()
            elif self._feed is not None:
                if not self._ingest():
                    return  # nothing new yet (a stream, or inputs still being read): dispatch what is ready
            else:
                return

    def _resume_page(self) -> None:
        """Queue items an earlier run left pending (retries included), in input order."""
        assert self._resume_after is not None
        rows = self.ledger.unfinished_page(self.job.id, "pending", self._resume_after, INGEST_BATCH)
        if not rows:
            self._resume_after = None
            return
        self._resume_after = rows[-1]["seq"]
        for row in rows:
            wire: WireItem = {"id": row["id"], "uri": row["uri"], "attempt": row["attempts"] + 1}
            if self.retry:
                wire["first"] = wire["attempt"]  # attempts go on counting; the retries start again here
            if row["input"] != row["uri"]:
                wire["input"] = row["input"]
            if row["meta"] is not None:
                wire["meta"] = loads(row["meta"])
            self._ready.append(wire)

    def _ingest(self, wait: float = 0.0) -> int:
        """Read a batch of input entries; stage the new items, skip the repeats. Returns how many
        entries were read."""
        assert self._feed is not None
        batch = self._feed.read(INGEST_BATCH, wait)
        if batch is None:
            self._feed = None
            self.progress.ingested = True
            return 0
        self._dry = not batch
        known = self.ledger.known(self.job.id, [e.id for e in batch]) if self._maybe_known and batch else {}
        buffer, ready, job, now = self._buffer, self._ready, self.job.num, time.monotonic()
        staged, settled = buffer.staged, buffer.settled
        fresh = 0
        for seq, entry in enumerate(batch, start=self._next_seq):
            item_id = entry.id
            if item_id in staged or item_id in settled or item_id in known:
                first_seen, holder = self._holder(item_id, known)
                if holder == entry.input:
                    if first_seen != seq:
                        self._duplicates.append(seq)  # a repeat of an earlier entry: processed once
                    continue  # (or the very entry an earlier run recorded: it resumes itself)
                item_id = f"{item_id}~{seq}"  # another input under the same id (a hash collision): its own
                if self._maybe_known and self.ledger.known(self.job.id, [item_id]):
                    continue
            fresh += 1
            try:
                meta = None if entry.meta is None else dumps(entry.meta)
                if not entry.input.isascii() or not (entry.uri or "").isascii():
                    (entry.input + (entry.uri or "")).encode("utf-8")  # lone surrogates cannot be stored
            except (TypeError, UnicodeEncodeError) as exc:
                entry, meta = _unstorable(entry, exc), None
            staged[item_id] = (item_head(job, item_id, seq, entry.input, entry.uri, meta), now)
            if entry.error is not None:
                buffer.fail(item_id, failure_row(job, item_id, "failed", 0, _input_error(entry.error)))
                self.progress.failed += 1
            elif entry.meta is None and entry.input == entry.uri:
                ready.append({"id": item_id, "uri": entry.uri})
            else:
                ready.append(_wire(entry))
        self.progress.total += fresh
        self._next_seq += len(batch)
        return len(batch)

    def _holder(self, item_id: str, known: dict[str, tuple[int, str]]) -> tuple[int, str]:
        """Where an id was first seen and the input it stands for: in memory, or recorded earlier."""
        staged = self._buffer.staged.get(item_id)
        row = staged[0] if staged is not None else self._buffer.settled.get(item_id)
        return (int(row[SEQ]), str(row[INPUT])) if row is not None else known[item_id]

    # --- dispatching -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while self.engine.capacity() > 0:
            if self._solo:
                items = [self._solo.popleft()]
            elif self._ready:
                size = min(self._chunk_size(), len(self._ready))
                items = [self._ready.popleft() for _ in range(size)]
            else:
                return
            chunk = Chunk(next(self._chunk_ids), self.spec, items)
            self._inflight[chunk.id] = {w["id"]: w for w in items}
            self._buffer.dispatched(items, time.monotonic())
            self.engine.submit(chunk)

    def _chunk_size(self) -> int:
        """Big chunks for cheap items (fewer messages), the engine's chunk_seconds of work otherwise,
        and smaller ones as the end nears so every worker finishes at about the same time. Near
        the end a chunk may hold less than a batch (a stage's batch is "up to" its size): a last
        batch of 8 items of 0.2 s would otherwise keep one worker busy 1.6 s while the others idle."""
        per_item = None if self._item_s is None else self._item_s + ITEM_OVERHEAD_S
        size = self.group if per_item is None else int(self.engine.chunk_seconds / per_item)
        share = math.ceil(len(self._ready) / (2 * self.engine.workers))
        if (self._feed is None or self._feed.streaming) and self._resume_after is None:
            size = min(size, share)
        size = max(self.group, min(MAX_CHUNK, size))
        size = -(-size // self.group) * self.group
        if self._feed is None and self._resume_after is None and share < self.group and self.engine.workers > 1:
            return max(share, 1)  # the last items of a finite job (a stream has no end to balance: it keeps batches)
        return size

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            wire = heapq.heappop(self._delayed)[2]
            (self._solo if wire["id"] in self._isolated else self._ready).appendleft(wire)

    # --- outcomes ----------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if isinstance(event, ItemsDone):
            self._done(event)
        elif isinstance(event, ChunkLost):
            self._lost(event)
        elif isinstance(event, WorkerReady):
            if self.startup_s is None:
                self.startup_s = time.monotonic() - self.progress.started
        elif isinstance(event, WorkerFailed):
            raise WorkerStartError(event.message)

    def _done(self, event: ItemsDone) -> None:
        pending = self._inflight.get(event.chunk_id)
        if pending is None:
            return  # a late or repeated report of a chunk already settled
        worker, report, succeed = event.worker, event.report, self._buffer.succeed
        done = 0
        for item_id, result, start, end, seconds in report.ok:
            wire = pending.pop(item_id, None)
            if wire is None:
                continue  # a repeated delivery, already counted
            done += 1
            succeed(item_id, wire.get("attempt", 1), worker, start, end, seconds, result)
        self.progress.done += done
        for failure in report.failed:
            wire = pending.pop(failure["id"], None)
            if wire is not None:
                self._failed(wire, failure["error"], worker, failure)
        for item_id in report.lost:
            wire = pending.pop(item_id, None)
            if wire is not None:
                self._requeue(wire, worker, "its worker process died running another item")
        if not pending:
            del self._inflight[event.chunk_id]
        if len(report):
            mean = report.took / len(report)
            self._item_s = mean if self._item_s is None else 0.7 * self._item_s + 0.3 * mean
        self.middleware.after_report(worker, report)

    def _lost(self, event: ChunkLost) -> None:
        pending = self._inflight.pop(event.chunk_id, {})
        suspects = [pending.pop(i) for i in event.suspects if i in pending]
        for wire in reversed(pending.values()):  # not running when the worker died: not to blame
            if self._losses[wire["id"]] >= MAX_LOSSES:
                suspects.append(wire)
            else:
                self._requeue(wire, event.worker, event.message)
        if len(suspects) > 1 and not all(w["id"] in self._isolated for w in suspects):
            for wire in suspects:  # several ran together: try each alone before blaming any
                self._isolate(wire, event.worker)
            return
        stage, message = describe_loss(event, self.stage_names)
        for wire in suspects:
            self._failed(wire, {"stage": stage, "type": event.kind, "message": message}, event.worker, None)

    def _requeue(self, wire: WireItem, worker: str = "", why: str = "") -> None:
        """Run an item again, first in line, without counting an attempt: it was not to blame."""
        self._losses[wire["id"]] += 1
        (self._solo if wire["id"] in self._isolated else self._ready).appendleft(wire)
        self._event(wire, "requeued", worker, {}, {"message": why})

    def _isolate(self, wire: WireItem, worker: str) -> None:
        self._isolated.add(wire["id"])
        self._solo.append(wire)
        self._event(wire, "isolated", worker, {}, {})

    def _failed(self, wire: WireItem, error: dict[str, Any], worker: str, timing: dict[str, Any] | None) -> None:
        if error.get("batch", 1) > 1 and wire["id"] not in self._isolated:
            self._isolate(wire, worker)
            return
        attempt = wire.get("attempt", 1)
        final = attempt - wire.get("first", 1) >= self.policy.retries or error.get("retry") is False
        timing = timing or {}
        times = {
            "worker": worker,
            "started": timing.get("start") or None,
            "finished": timing.get("end") or time.time(),
            "seconds": timing.get("seconds"),
        }
        self._buffer.fail(
            wire["id"], failure_row(self.job.num, wire["id"], "failed" if final else "pending", attempt, error, **times)
        )
        self._event(wire, "failed" if final else "retry", worker, times, error)
        if final:
            self.progress.failed += 1
            return
        self.progress.retries += 1
        due = time.monotonic() + self.policy.delay(attempt)
        heapq.heappush(self._delayed, (due, next(self._ticket), {**wire, "attempt": attempt + 1}))

    def _event(self, wire: WireItem, kind: str, worker: str, times: dict[str, Any], error: dict[str, Any]) -> None:
        self._buffer.events.append(
            {
                "item_id": wire["id"],
                "at": time.time(),
                "kind": kind,
                "attempt": wire.get("attempt", 1),
                "worker": worker,
                "started_at": times.get("started"),
                "finished_at": times.get("finished"),
                "stage": error.get("stage"),
                "error_type": error.get("type"),
                "message": error.get("message"),
            }
        )

    # --- writing -----------------------------------------------------------------------------
    def _commit(self, *, final: bool = False) -> None:
        """Write outcomes, new items that settled, and new items that waited long enough, in one go;
        tell the source which entries are safely recorded."""
        counted = 0

        def extra(watermark: int) -> dict[str, Any]:
            nonlocal counted
            counted = next((i for i, seq in enumerate(self._duplicates) if seq >= watermark), len(self._duplicates))
            return {"duplicates": counted, "checkpoint": self._source.checkpoint(watermark)}

        watermark, ingested = self._buffer.flush(self._next_seq, self._feed is None, final=final, extra=extra)
        for _ in range(counted):  # recorded now
            self._duplicates.popleft()
        self._source.done(watermark, ingested)
        self._maybe_known = self._maybe_known or self._buffer.wrote_items
        self._last_commit = time.monotonic()


def _wire(entry: Entry) -> WireItem:
    wire: WireItem = {"id": entry.id, "uri": entry.uri}
    if entry.input != entry.uri:
        wire["input"] = entry.input
    if entry.meta is not None:
        wire["meta"] = entry.meta
    return wire


def _unstorable(entry: Entry, exc: Exception) -> Entry:
    """A failed entry naming one whose text or fields cannot be stored (lone surrogates from a
    JSON escape, values JSON cannot hold)."""
    name = safe_text(entry.input)
    return Entry(entry.id, name, error=f"{name}: cannot be stored as given ({safe_text(str(exc))})")


def _input_error(message: str) -> dict[str, Any]:
    return {"stage": "input", "type": "InputError", "message": message}
