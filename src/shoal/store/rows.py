"""Row layouts for the ledger's hot paths, and statements that take them as plain tuples.

The coordinator writes tens of thousands of rows a second; building dicts and letting
SQLAlchemy process each parameter would cost more than SQLite itself. So the hot statements are
compiled once by SQLAlchemy for the dialect and fed tuples in a declared field order.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, literal_column, update

from shoal.store.schema import SEQ_BITS, items

#: a whole item row, as inserted
ITEM_FIELDS = (
    "key",
    "job",
    "id",
    "seq",
    "input",
    "uri",
    "meta",
    "status",
    "attempts",
    "worker",
    "started_at",
    "finished_at",
    "seconds",
    "result",
    "error_stage",
    "error_type",
    "error_message",
    "error_traceback",
)
SEQ = ITEM_FIELDS.index("seq")
INPUT = ITEM_FIELDS.index("input")
STATUS = ITEM_FIELDS.index("status")

#: an update of an item that succeeded
SUCCEEDED_FIELDS = ("worker", "started", "finished", "seconds", "result", "attempts", "job", "id")
#: an update of an item that failed (for good, or for now: status "pending" means a retry is due)
FAILURE_FIELDS = (
    "status",
    "attempts",
    "worker",
    "started",
    "finished",
    "seconds",
    "stage",
    "type",
    "message",
    "traceback",
    "job",
    "id",
)
_COLUMN = {
    "started": "started_at",
    "finished": "finished_at",
    "stage": "error_stage",
    "type": "error_type",
    "message": "error_message",
    "traceback": "error_traceback",
}
_SUCCEEDED: ColumnElement[str] = literal_column("'succeeded'")  # inline SQL: rows carry only their own values
_PENDING: ColumnElement[str] = literal_column("'pending'")


def item_head(job: int, item_id: str, seq: int, input: str, uri: str | None, meta: str | None) -> tuple[Any, ...]:
    """The first fields of an item row: who it is. An outcome tail completes it."""
    return ((job << SEQ_BITS) | seq, job, item_id, seq, input, uri, meta)


HEAD = 7  #: fields of item_head()
PENDING_TAIL = ("pending", 0, None, None, None, None, None, None, None, None, None)


def succeeded_row(
    job: int, item_id: str, attempts: int, worker: str, started: float, finished: float, seconds: str, result: str
) -> tuple[Any, ...]:
    """SUCCEEDED_FIELDS, in order."""
    return (worker, started, finished, seconds, result, attempts, job, item_id)


def failure_row(
    job: int, item_id: str, status: str, attempts: int, error: dict[str, Any], **timing: Any
) -> tuple[Any, ...]:
    """FAILURE_FIELDS, in order."""
    return (
        status,
        attempts,
        timing.get("worker"),
        timing.get("started"),
        timing.get("finished"),
        timing.get("seconds"),
        error.get("stage"),
        error.get("type"),
        error.get("message"),
        error.get("traceback"),
        job,
        item_id,
    )


NO_ERROR = (None, None, None, None)


def with_success(head: tuple[Any, ...], update: tuple[Any, ...], error: tuple[Any, ...] = NO_ERROR) -> tuple[Any, ...]:
    """A whole item row (ITEM_FIELDS) from item_head() and a succeeded_row(); ``error`` keeps the
    last failed attempt's error fields visible, as an update of a written row does."""
    worker, started, finished, seconds, result, attempts, _, _ = update
    return (*head, "succeeded", attempts, worker, started, finished, seconds, result, *error)


def with_failure(head: tuple[Any, ...], update: tuple[Any, ...]) -> tuple[Any, ...]:
    """A whole item row (ITEM_FIELDS) from item_head() and a failure_row()."""
    status, attempts, worker, started, finished, seconds, stage, kind, message, traceback, _, _ = update
    return (*head, status, attempts, worker, started, finished, seconds, None, stage, kind, message, traceback)


class Bulk:
    """A statement compiled once and run over many tuple rows at the database driver's speed."""

    def __init__(self, statement: Any, fields: Sequence[str], engine: Engine, *, prefix: str = "") -> None:
        self.statement = statement
        self.names = [prefix + f for f in fields]
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.positional = bool(engine.dialect.positional)
        self.reorder: Callable[[Sequence[Any]], tuple[Any, ...]] | None = None
        if self.positional:
            order = [self.names.index(name) for name in compiled.positiontup or ()]
            if order != list(range(len(self.names))):
                self.reorder = operator.itemgetter(*order)

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
        """Run over the rows; returns how many rows changed (the job's counts follow it)."""
        if not self.positional:  # the driver's own executemany: SQLAlchemy's may not count rows
            named = [dict(zip(self.names, r, strict=True)) for r in rows]
            return int(conn.exec_driver_sql(self.sql, named).rowcount)
        params = list(rows) if self.reorder is None else list(map(self.reorder, rows))
        return int(conn.exec_driver_sql(self.sql, params).rowcount)


def insert_items(engine: Engine) -> Bulk:
    """Insert whole item rows; an item already known is left as it is."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement: Any = postgresql_insert(items)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(items)
    statement = statement.values({f: bindparam(f) for f in ITEM_FIELDS}).on_conflict_do_nothing()
    return Bulk(statement, ITEM_FIELDS, engine)


def update_items(engine: Engine, *, succeeded: bool) -> Bulk:
    """Record outcomes of items already written and still pending. Only a pending item changes:
    a succeeded one is never overwritten, a final failure or a cancel stands, and every changed
    row is a move out of pending, so the job's counts follow from the row count alone."""
    fields = SUCCEEDED_FIELDS if succeeded else FAILURE_FIELDS
    values: dict[str, Any] = {_COLUMN.get(f, f): bindparam(f"b_{f}") for f in fields if f not in ("job", "id")}
    if succeeded:
        values["status"] = _SUCCEEDED
    statement = (
        update(items)
        .where(items.c.job == bindparam("b_job"), items.c.id == bindparam("b_id"), items.c.status == _PENDING)
        .values(**values)
    )
    return Bulk(statement, fields, engine, prefix="b_")
