"""The durable item ledger: jobs, items, runs and events, through SQLAlchemy Core.

One coordinator writes a job's rows, in batches; anyone may read. SQLite runs in WAL mode so
readers (``shoal jobs``, the web UI, tests) never block the writer. Item updates are
idempotent: a succeeded item is never overwritten, however often its outcome arrives.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from shoal.errors import ConfigError, JobBusyError, JobStateError, MissingDependencyError, ShoalError
from shoal.states import FINISHED
from shoal.store.migrate import migrate
from shoal.store.rows import STATUS, insert_items, update_items
from shoal.store.schema import events, items, jobs, of_job, runs, submissions, unfinished

STATUSES = ("pending", "succeeded", "failed", "cancelled")
ANALYSE_FIRST = 10_000  #: item rows written before PostgreSQL's statistics are first renewed
HEARTBEAT_STALE = 15.0  #: seconds without a heartbeat after which a job's owner is presumed dead
_PAGE = 5000


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table."""

    num: int
    id: str
    key: str
    pipeline: str
    fingerprint: str
    project: str
    inputs: str
    options: str
    out: str
    state: str
    created_at: float
    updated_at: float
    finished_at: float | None
    entries: int
    ingested: bool
    owner: str | None
    heartbeat_at: float | None
    round: int = 0  #: 0 for the first job of this key; each --new starts the next
    pending: int = 0  #: item counts, kept by every write
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    duplicates: int = 0  #: input entries before the watermark that repeated an earlier item
    checkpoint: str | None = None  #: JSON: where to resume reading the inputs (see sources.Checkpoint)

    @property
    def counts(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in STATUSES}

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @classmethod
    def read(cls, row: RowMapping) -> JobRecord:
        """A job as readers should see it: one recorded as running whose coordinator is gone
        (killed, or stopped by a ledger it could no longer write to) is interrupted."""
        record = cls(**row)
        if record.state == "running" and not _alive(record.owner or "", record.heartbeat_at, time.time()):
            return replace(record, state="interrupted")
        return record


class Ledger:
    """Access to one ledger database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._write_lock = threading.Lock()
        self._nums: dict[str, int] = {}  #: job id -> jobs.num, which item rows carry
        try:
            migrate(self.engine)
        except OperationalError as exc:
            raise ConfigError(f"cannot open the ledger at {_safe(url)}: {exc.orig}") from None
        self._insert = insert_items(self.engine)
        self._written = 0  #: item rows this process inserted
        self._analyse_at = ANALYSE_FIRST  #: rows written at which PostgreSQL's statistics are renewed next
        self._succeed = update_items(self.engine, succeeded=True)
        self._fail = update_items(self.engine, succeeded=False)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return _safe(self.url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A write transaction. Threads of this process take turns here rather than in SQLite's
        busy handler, which sleeps in steps of milliseconds."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    # --- jobs --------------------------------------------------------------------------------
    def open_job(self, key: str, fields: Callable[[], dict[str, Any]], *, new: bool = False) -> tuple[JobRecord, bool]:
        """The newest job of ``key``, or a new one (``new``: always the next round); returns it and
        whether it was created. ``fields()`` gives a new job's other columns (its id among them).

        (key, round) is unique, so when processes create the same job at the same instant one
        insert wins and the others return the winner's job instead of making another.
        """
        for _ in range(10):
            existing = self.find_job(key)
            if existing is not None and not new:
                return existing, False
            values = {**fields(), "key": key, "round": 0 if existing is None else existing.round + 1}
            try:
                with self._begin() as conn:
                    conn.execute(insert(jobs).values(**values))
            except IntegrityError:
                new = False  # created by another process just now: that one is the job
                continue
            return self.get_job(values["id"]), True
        raise ShoalError(f"could not create a job for key {key}: the ledger keeps refusing it")

    def find_job(self, key: str) -> JobRecord | None:
        query = select(jobs).where(jobs.c.key == key).order_by(jobs.c.round.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return JobRecord.read(row) if row else None

    def get_job(self, job_id: str) -> JobRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise ShoalError(f"no job {job_id!r} in the ledger at {self.url} (see `shoal jobs`)")
        return JobRecord.read(row)

    def list_jobs(self, limit: int = 50) -> list[JobRecord]:
        query = select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [JobRecord.read(row) for row in conn.execute(query).mappings()]

    def claim(self, job_id: str, owner: str) -> None:
        """Make ``owner`` the job's only coordinator, unless a live one holds it.

        One conditional UPDATE, judged by its row count, so two processes claiming at the same
        instant cannot both win: free, ours already, or its owner's heartbeat is stale. An owner
        on this host whose process is gone is replaced the same way, by compare-and-swap.
        """
        now = time.time()
        taken = {"owner": owner, "heartbeat_at": now, "state": "running", "updated_at": now}
        free = or_(
            jobs.c.owner.is_(None),
            jobs.c.owner == owner,
            jobs.c.heartbeat_at.is_(None),
            jobs.c.heartbeat_at < now - HEARTBEAT_STALE,
        )
        with self._begin() as conn:
            if conn.execute(update(jobs).where(jobs.c.id == job_id, free).values(**taken)).rowcount:
                return
            holder = conn.execute(select(jobs.c.owner, jobs.c.heartbeat_at).where(jobs.c.id == job_id)).one()
            if holder.owner and not _alive(holder.owner, holder.heartbeat_at, now):
                swap = update(jobs).where(jobs.c.id == job_id, jobs.c.owner == holder.owner).values(**taken)
                if conn.execute(swap).rowcount:
                    return
        seen = f" (last heartbeat {now - holder.heartbeat_at:.0f} s ago)" if holder.heartbeat_at else ""
        raise JobBusyError(
            f"job {job_id} is being run by {holder.owner}{seen}: wait for it (--wait) or stop that process first"
        )

    def move_job(self, job_id: str, out: str) -> JobRecord:
        """Give a job another run folder (its own could not be written)."""
        with self._begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(out=out, updated_at=time.time()))
        return self.get_job(job_id)

    def drop_unstarted(self, job_id: str) -> bool:
        """Remove a job that never ran and holds nothing (its first run could not start): a failed
        start should leave no empty job behind. False, and nothing removed, if it has items or runs."""
        num = self._num(job_id)
        with self._begin() as conn:
            gone = conn.execute(
                delete(jobs).where(
                    jobs.c.id == job_id,
                    ~exists(select(items.c.key).where(*of_job(num))),
                    ~exists(select(runs.c.number).where(runs.c.job_id == job_id)),
                )
            ).rowcount
        self._nums.pop(job_id, None)
        return bool(gone)

    def check_unowned(self, job_id: str) -> None:
        """Raise JobBusyError if a live run holds the job."""
        with self.engine.connect() as conn:
            held = conn.execute(select(jobs.c.owner).where(jobs.c.id == job_id, ~_unowned(time.time()))).scalar()
        if held is not None:
            raise JobBusyError(f"job {job_id} is running (held by {held}); retry it once it ends")

    def owner_of(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.owner).where(jobs.c.id == job_id)).scalar()

    def set_state(self, job_id: str, state: str, *, finished: bool = False) -> None:
        now = time.time()
        values: dict[str, Any] = {"state": state, "updated_at": now, "owner": None}
        if finished:
            values["finished_at"] = now
        with self._begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def cancel(self, job_id: str) -> int:
        """Cancel a job: its pending items become cancelled; returns how many."""
        now = time.time()
        with self._begin() as conn:
            cancelled = conn.execute(
                update(items)
                .where(*of_job(self._num(job_id)), items.c.status == "pending")
                .values(status="cancelled", finished_at=now)
            ).rowcount
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    state="cancelled",
                    updated_at=now,
                    finished_at=now,
                    owner=None,
                    pending=jobs.c.pending - cancelled,
                    cancelled=jobs.c.cancelled + cancelled,
                )
            )
        return int(cancelled)

    def requeue_failed(self, job_id: str, fingerprint: str) -> int:
        """Make a job's failed items pending again, for a retry with the code ``fingerprint``;
        returns how many. A row that could not be read (nothing stored to run) stays failed.
        Refused (JobBusyError) while a run owns the job: the job is taken in the same
        transaction, so no run can start or finish it halfway."""
        now = time.time()
        with self._begin() as conn:
            taken = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, _unowned(now))
                .values(state="pending", finished_at=None, updated_at=now, fingerprint=fingerprint, owner=None)
            ).rowcount
            if not taken:
                raise JobBusyError(f"job {job_id} is running (held by {self.owner_of(job_id)}); retry it once it ends")
            runnable = or_(items.c.uri.is_not(None), items.c.meta.is_not(None))
            moved = conn.execute(
                update(items).where(*unfinished(self._num(job_id), "failed"), runnable).values(status="pending")
            ).rowcount
            if not moved:  # every failed item is a row that could not be read: nothing can run
                raise JobStateError(f"job {job_id} has no failed items that can run again: see its errors.csv")
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(failed=jobs.c.failed - moved, pending=jobs.c.pending + moved)
            )
        return int(moved)

    def delete_job(self, job_id: str) -> JobRecord:
        """Remove a job and everything the ledger holds of it (items, runs, events, submission), in
        one transaction; returns what it was. Refused (JobBusyError) while a run owns the job."""
        job = self.get_job(job_id)
        with self._begin() as conn:
            if not conn.execute(delete(jobs).where(jobs.c.id == job_id, _unowned(time.time()))).rowcount:
                raise JobBusyError(f"job {job_id} is running (held by {self.owner_of(job_id)}); stop it first")
            conn.execute(delete(items).where(*of_job(job.num)))
            for table in (runs, events, submissions):
                conn.execute(delete(table).where(table.c.job_id == job_id))
        self._nums.pop(job_id, None)
        return job

    def jobs_before(self, cutoff: float, limit: int = 1000) -> list[JobRecord]:
        """Jobs not running whose last change is older than ``cutoff`` (a Unix time), oldest first."""
        query = (
            select(jobs)
            .where(jobs.c.updated_at < cutoff, _unowned(time.time()))
            .order_by(jobs.c.updated_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [JobRecord.read(row) for row in conn.execute(query).mappings()]

    # --- items -------------------------------------------------------------------------------
    def _num(self, job_id: str) -> int:
        if job_id not in self._nums:
            self._nums[job_id] = self.get_job(job_id).num
        return self._nums[job_id]

    def reread(self, job_id: str, changes: Sequence[dict[str, Any]]) -> None:
        """Store what a retry read anew for failed items: each change names an item (``id``) and
        its ``input``, ``uri``, ``meta`` now, and for a row still unreadable, ``error`` (the
        cause now). Only items still failed change: a run that took them meanwhile wins."""
        if not changes:
            return
        where = (*unfinished(self._num(job_id), "failed"), items.c.id == bindparam("item"))
        values: dict[str, Any] = {
            "input": bindparam("now_input"),
            "uri": bindparam("now_uri"),
            "meta": bindparam("now_meta"),
        }
        rows = [
            {"item": c["id"], "now_input": c["input"], "now_uri": c["uri"], "now_meta": c["meta"], "cause": c["error"]}
            for c in changes
        ]
        with self._begin() as conn:
            readable = [r for r in rows if r["cause"] is None]
            if readable:
                conn.execute(update(items).where(*where).values(values), readable)
            unreadable = [r for r in rows if r["cause"] is not None]
            if unreadable:  # the failure is now the input's: stage, type and message all say so
                cause = {"error_stage": "input", "error_type": "InputError", "error_traceback": None}
                with_cause = {**values, **cause, "error_message": bindparam("cause")}
                conn.execute(update(items).where(*where).values(with_cause), unreadable)

    def has_items(self, job_id: str) -> bool:
        """Whether any item of the job is recorded (a run may have written some before it was killed)."""
        with self.engine.connect() as conn:
            return conn.execute(select(items.c.key).where(*of_job(self._num(job_id))).limit(1)).first() is not None

    def known(self, job_id: str, ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """Which of ``ids`` the job already has, with where each was first seen and its input."""
        found: dict[str, tuple[int, str]] = {}
        with self.engine.connect() as conn:
            for k in range(0, len(ids), 500):
                query = select(items.c.id, items.c.seq, items.c.input).where(
                    items.c.job == self._num(job_id), items.c.id.in_(ids[k : k + 500])
                )
                found.update((row.id, (row.seq, row.input)) for row in conn.execute(query))
        return found

    def unfinished_page(self, job_id: str, status: str, after_seq: int, limit: int) -> list[RowMapping]:
        """The job's items of a ``status`` other than succeeded after a position, in input order
        (through the index of items not succeeded: a job of millions with none pending answers at
        once)."""
        query = (
            select(items.c.id, items.c.seq, items.c.uri, items.c.input, items.c.meta, items.c.attempts)
            .where(*unfinished(self._num(job_id), status), items.c.seq > after_seq)
            .order_by(items.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).mappings())

    def record(
        self,
        job_id: str,
        *,
        new: Sequence[Sequence[Any]] = (),
        succeeded: Sequence[tuple[Any, ...]] = (),
        unfinished: Sequence[tuple[Any, ...]] = (),
        new_events: Sequence[dict[str, Any]] = (),
        entries: int | None = None,
        ingested: bool | None = None,
        owner: str | None = None,
        duplicates: int = 0,
        checkpoint: str | None = None,
    ) -> None:
        """Write one batch in one transaction, and refresh the job's heartbeat.

        ``new`` are whole item rows (rows.ITEM_FIELDS), outcome included when already known;
        ``succeeded`` and ``unfinished`` update items written earlier (rows.succeeded_row,
        rows.failure_row). ``entries`` advances the job's input watermark: every input entry
        before it is now in the ledger (or was a duplicate: ``duplicates`` more of those), and
        ``checkpoint`` says where in the inputs reading can resume. The job's counts by status
        change with exactly the rows that changed. With ``owner``, the batch is written only while
        that process still owns the job: one that lost it (its heartbeat went stale and another
        run took over) gets JobBusyError and writes nothing.
        """
        job: dict[str, Any] = {"heartbeat_at": time.time()}
        if entries is not None:
            job["entries"] = entries
        if ingested is not None:
            job["ingested"] = ingested
        if duplicates:
            job["duplicates"] = jobs.c.duplicates + duplicates
        if checkpoint is not None:
            job["checkpoint"] = checkpoint
        with self._begin() as conn:
            change: Counter[str] = Counter()
            if new:
                for status, rows in _by(new, STATUS).items():
                    change[status] += self._insert.run(conn, rows)
            if succeeded:
                moved = self._succeed.run(conn, succeeded)  # from pending, and only from pending
                change["pending"] -= moved
                change["succeeded"] += moved
            for status, rows in _by(unfinished, 0).items():
                moved = self._fail.run(conn, rows)
                change["pending"] -= moved
                change[status] += moved
            if new_events:
                conn.execute(insert(events), [{"job_id": job_id, **e} for e in new_events])
            job.update({s: jobs.c[s] + n for s, n in change.items() if n})
            fence = [jobs.c.id == job_id] + ([jobs.c.owner == owner] if owner is not None else [])
            if not conn.execute(update(jobs).where(*fence).values(**job)).rowcount:
                raise JobBusyError(f"job {job_id} was taken over by {self.owner_of(job_id)}; this run stops")
        self._written += len(new)
        if self._written >= self._analyse_at:
            self._analyse()

    def _analyse(self) -> None:
        """Renew PostgreSQL's statistics of the items as a job grows (at 10k rows, then each time
        four times as many): plans made while the table was small would scan millions of rows
        per lookup, and a server with autovacuum off never renews them itself."""
        self._analyse_at = self._written * 4
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE items"))

    def counts(self, job_id: str) -> dict[str, int]:
        """The job's items by status, as kept with the job: no item row is counted."""
        return self.get_job(job_id).counts

    def iter_items(self, job_id: str, status: str | None = None, columns: Sequence[str] = ()) -> Iterator[RowMapping]:
        """Stream a job's items in input order, a page at a time (all columns unless named)."""
        chosen = [items.c[name] for name in ("seq", *columns)] if columns else [items]
        after = -1
        while True:
            query = select(*chosen).where(*of_job(self._num(job_id), after))
            if status is not None:
                query = query.where(items.c.status == status)
            with self.engine.connect() as conn:
                page = list(conn.execute(query.order_by(items.c.key).limit(_PAGE)).mappings())
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1]["seq"]

    def item(self, job_id: str, item_id: str) -> RowMapping | None:
        with self.engine.connect() as conn:
            query = select(items).where(items.c.job == self._num(job_id), items.c.id == item_id)
            return conn.execute(query).mappings().first()

    # --- runs and events ---------------------------------------------------------------------
    def start_run(self, job_id: str, engine: str, workers: int, owner: str) -> int:
        with self._begin() as conn:
            number = (
                conn.execute(
                    select(func.coalesce(func.max(runs.c.number), 0)).where(runs.c.job_id == job_id)
                ).scalar_one()
                + 1
            )
            conn.execute(
                insert(runs).values(
                    job_id=job_id, number=number, started_at=time.time(), engine=engine, workers=workers, owner=owner
                )
            )
        return int(number)

    def end_run(
        self, job_id: str, number: int, outcome: str, startup_s: float | None, workers: int | None = None
    ) -> None:
        """Close a run; ``workers`` corrects the count when more workers turned up than at the start."""
        values: dict[str, Any] = {"ended_at": time.time(), "outcome": outcome, "startup_s": startup_s}
        if workers is not None:
            values["workers"] = workers
        with self._begin() as conn:
            conn.execute(update(runs).where(runs.c.job_id == job_id, runs.c.number == number).values(**values))

    def runs(self, job_id: str) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(runs).where(runs.c.job_id == job_id).order_by(runs.c.number)).mappings())

    def last_runs(self, job_ids: Sequence[str]) -> dict[str, RowMapping]:
        """Each job's latest run, for a page of jobs in one query (by the runs' primary key)."""
        newest = (
            select(runs.c.job_id, func.max(runs.c.number).label("number"))
            .where(runs.c.job_id.in_(job_ids))
            .group_by(runs.c.job_id)
            .subquery()
        )
        query = select(runs).join(newest, (runs.c.job_id == newest.c.job_id) & (runs.c.number == newest.c.number))
        with self.engine.connect() as conn:
            return {row["job_id"]: row for row in conn.execute(query).mappings()}

    def events(self, job_id: str) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(events).where(events.c.job_id == job_id).order_by(events.c.id)).mappings())


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {url!r} (try sqlite:///path/ledger.db)") from None
    if parsed.get_backend_name() == "postgresql" and "+" not in parsed.drivername:
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, the maintained driver
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except ImportError:
            raise MissingDependencyError("psycopg", "postgres") from None
        except ArgumentError as exc:
            raise ConfigError(f"cannot use database {_safe(url)}: {exc}") from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _tune(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the coordinator
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
        cursor.close()

    return engine


def _by(rows: Sequence[Sequence[Any]], field: int) -> dict[Any, list[Sequence[Any]]]:
    """Rows grouped by one of their fields, in order."""
    groups: dict[Any, list[Sequence[Any]]] = {}
    for row in rows:
        groups.setdefault(row[field], []).append(row)
    return groups


def _alive(owner: str, heartbeat_at: float | None, now: float) -> bool:
    """Whether a job's recorded coordinator is still running: a fresh heartbeat and, when it
    ran on this host, a live process (so a killed run is resumed at once)."""
    if heartbeat_at is None or now - heartbeat_at >= HEARTBEAT_STALE:
        return False
    host, _, pid = owner.partition(":")
    pid = pid.partition(":")[0]  # host:pid:token (host:pid before runs had tokens)
    if host != os.uname().nodename or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def job_state(now: float) -> Any:
    """The jobs.state column as JobRecord.read sees it, for filters and counts in SQL (judged by
    the heartbeat alone: a run killed on this host reads as running here for up to
    HEARTBEAT_STALE seconds)."""
    dead = jobs.c.state == "running", _unowned(now)
    return case((and_(*dead), "interrupted"), else_=jobs.c.state)


def _unowned(now: float) -> Any:
    """No run holds the job: none ever claimed it, or its owner's heartbeat has gone stale."""
    return or_(jobs.c.owner.is_(None), jobs.c.heartbeat_at.is_(None), jobs.c.heartbeat_at < now - HEARTBEAT_STALE)
