"""The jobs the web service was asked to run: what it resumes when it starts again."""

from __future__ import annotations

import time

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from shoal.states import FINISHED
from shoal.store.ledger import JobRecord, Ledger
from shoal.store.schema import jobs, submissions


def record_submission(ledger: Ledger, job_id: str, *, by: str | None = None, upload: str | None = None) -> None:
    """Note that the service runs this job; submitting it again clears an earlier start error.
    Safe to race: of two processes (or threads) recording the same job at once, one inserts and
    the other clears."""
    row = {"job_id": job_id, "submitted_at": time.time(), "submitted_by": by, "upload": upload}
    try:
        with ledger._begin() as conn:
            conn.execute(insert(submissions).values(**row))
    except IntegrityError:
        with ledger._begin() as conn:
            conn.execute(update(submissions).where(submissions.c.job_id == job_id).values(error=None))


def set_error(ledger: Ledger, job_id: str, error: str | None) -> None:
    with ledger._begin() as conn:
        conn.execute(update(submissions).where(submissions.c.job_id == job_id).values(error=error))


def submission(ledger: Ledger, job_id: str) -> RowMapping | None:
    with ledger.engine.connect() as conn:
        return conn.execute(select(submissions).where(submissions.c.job_id == job_id)).mappings().first()


def unfinished(ledger: Ledger) -> list[JobRecord]:
    """Jobs the service accepted that have not finished and did not fail to start, oldest first."""
    query = (
        select(jobs)
        .join(submissions, submissions.c.job_id == jobs.c.id)
        .where(jobs.c.state.not_in(FINISHED), submissions.c.error.is_(None))
        .order_by(jobs.c.created_at)
    )
    with ledger.engine.connect() as conn:
        return [JobRecord.read(row) for row in conn.execute(query).mappings()]
