"""The coordinator's rows on their way to the ledger, forgotten only once they are written.

A new item waits in memory (staged) for up to STAGE_S seconds from when it is handed to a worker
before its row is inserted, so an item that finishes quickly is written once, with its outcome,
instead of inserted and then updated (however long it waited behind others to be dispatched).
Outcomes of items written earlier wait for the next flush. A flush writes everything in one
transaction and moves the job's input watermark to the first entry still staged, so a
coordinator killed with items in memory re-reads exactly those entries on the next run.

Nothing is dropped from the buffer until the ledger has accepted the write. A write that fails
is tried again with backoff for up to WRITE_RETRY_S seconds (a locked SQLite file, a PostgreSQL
connection reset), then the run stops with LedgerWriteError, its rows still unwritten and its
watermark where it was, so the same command resumes with every item.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from shoal.errors import LedgerWriteError
from shoal.store import Ledger
from shoal.store.rows import HEAD, NO_ERROR, PENDING_TAIL, SEQ, succeeded_row, with_failure, with_success

log = logging.getLogger(__name__)
STAGE_S = 1.0  #: seconds a new item may wait in memory for its outcome before its row is written
WRITE_RETRY_S = 10.0  #: seconds a failing ledger write is retried before the run stops
FULL = 8192  #: rows buffered before a flush is due whatever the time

Row = tuple[Any, ...]


class WriteBuffer:
    """Rows of one job not yet in the ledger: new items (staged, or settled with an outcome),
    outcomes of items written earlier, and attempt events."""

    def __init__(self, ledger: Ledger, job_id: str, job_num: int, owner: str | None) -> None:
        self.ledger, self.job_id, self.job_num, self.owner = ledger, job_id, job_num, owner
        self.staged: dict[str, tuple[Row, float]] = {}  #: new items (head, staged at), input order
        self.settled: dict[str, Row] = {}  #: new items with an outcome: whole rows
        self.succeeded: list[Row] = []  #: successes of items written earlier
        self.unfinished: list[Row] = []  #: failures (final, or retries due) of items written earlier
        self.events: list[dict[str, Any]] = []
        self.wrote_items = False  #: some new item rows are in the ledger now

    def __len__(self) -> int:
        """Rows waiting that are due at the next flush (staged ones wait for their time)."""
        return len(self.settled) + len(self.succeeded) + len(self.unfinished)

    def holds(self, item_id: str) -> bool:
        """Whether the item is new in this run and not yet written."""
        return item_id in self.staged or item_id in self.settled

    def stage(self, item_id: str, head: Row, now: float) -> None:
        self.staged[item_id] = (head, now)

    def dispatched(self, wires: list[dict[str, Any]], now: float) -> None:
        """These items were handed to a worker now: their time in memory counts from here."""
        staged = self.staged
        for wire in wires:
            found = staged.get(wire["id"])
            if found is not None:
                staged[wire["id"]] = (found[0], now)

    def succeed(
        self, item_id: str, attempt: int, worker: str, start: float, end: float, seconds: str, result: str
    ) -> None:
        staged = self.staged.pop(item_id, None)
        if staged is not None:  # the hot path: a new item, written once with its outcome
            self.settled[item_id] = (*staged[0], "succeeded", attempt, worker, start, end, seconds, result, *NO_ERROR)
            return
        update = succeeded_row(self.job_num, item_id, attempt, worker, start, end, seconds, result)
        earlier = self.settled.get(item_id)
        if earlier is not None:  # its row, from an earlier attempt, is not written yet
            self.settled[item_id] = with_success(earlier[:HEAD], update, earlier[-len(NO_ERROR) :])
        else:
            self.succeeded.append(update)

    def fail(self, item_id: str, failure: Row) -> None:
        """A failure (rows.failure_row): final, or pending with a retry due."""
        staged = self.staged.pop(item_id, None)
        if staged is not None:
            self.settled[item_id] = with_failure(staged[0], failure)
        elif item_id in self.settled:
            self.settled[item_id] = with_failure(self.settled[item_id][:HEAD], failure)
        else:
            self.unfinished.append(failure)

    def due(self, now: float, since_flush: float, every: float) -> bool:
        """Whether a flush is worth doing now."""
        if len(self) >= FULL:
            return True
        if since_flush < every:
            return False
        if len(self) or self.events:
            return True
        return bool(self.staged) and now - next(iter(self.staged.values()))[1] >= STAGE_S

    def flush(
        self,
        next_seq: int,
        read_all: bool,
        *,
        final: bool = False,
        extra: Callable[[int], dict[str, Any]] | None = None,
    ) -> tuple[int, bool]:
        """Write what is due (everything when ``final``) in one transaction; returns the watermark
        written and whether the job is now recorded as wholly ingested. ``extra(watermark)`` gives
        more of the job's fields to record with that watermark (Ledger.record's keywords)."""
        now = time.monotonic()
        aged = 0
        for _, staged_at in self.staged.values():
            if not final and now - staged_at < STAGE_S:
                break
            aged += 1
        waiting = itertools.islice(self.staged.values(), aged, None)
        first_waiting = next(waiting, None)
        watermark = first_waiting[0][SEQ] if first_waiting is not None else next_seq
        ingested = read_all and first_waiting is None
        new = [
            *self.settled.values(),
            *(head + PENDING_TAIL for head, _ in itertools.islice(self.staged.values(), aged)),
        ]
        more = extra(watermark) if extra is not None else {}
        self._write(
            lambda: self.ledger.record(
                self.job_id,
                new=new,
                succeeded=self.succeeded,
                unfinished=self.unfinished,
                new_events=self.events,
                entries=watermark,
                ingested=ingested,
                owner=self.owner,
                **more,
            )
        )
        for item_id in list(itertools.islice(self.staged, aged)):  # forgotten only now that they are written
            del self.staged[item_id]
        self.wrote_items = self.wrote_items or bool(new)
        self.settled, self.succeeded, self.unfinished, self.events = {}, [], [], []
        return watermark, ingested

    def _write(self, write: Callable[[], None]) -> None:
        deadline = time.monotonic() + WRITE_RETRY_S
        pause = 0.1
        while True:
            try:
                write()
                return
            except DBAPIError as exc:
                if time.monotonic() + pause > deadline:
                    raise LedgerWriteError(
                        f"cannot write to the ledger at {self.ledger.safe_url}: {_reason(exc)}. Nothing is lost: "
                        "fix that and run the same command again to resume"
                    ) from exc
                log.warning("writing to the ledger failed (%s); trying again in %.1f s", _reason(exc), pause)
                time.sleep(pause)
                pause = min(2.0, pause * 2)


def _reason(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
