"""Read-side queries for the web service: pages of jobs and items, filtered, with totals."""

from __future__ import annotations

import time

from sqlalchemy import RowMapping, func, select

from shoal.store.ledger import JobRecord, Ledger, job_state
from shoal.store.schema import events, items, jobs, of_job, unfinished

STATUSES = ("pending", "succeeded", "failed", "cancelled")
#: item columns a page of items shows; the result and traceback wait for the item's own page
SUMMARY: tuple[str, ...] = ("id", "seq", "input", "uri", "status", "attempts", "worker", "started_at", "finished_at")
SUMMARY += ("error_stage", "error_type", "error_message")


def find_job(ledger: Ledger, job_id: str) -> JobRecord | None:
    with ledger.engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return JobRecord.read(row) if row else None


def page_jobs(
    ledger: Ledger, *, state: str | None = None, pipeline: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[JobRecord], int]:
    """A page of jobs, newest first, and how many match in all."""
    query = select(jobs)
    total = select(func.count()).select_from(jobs)
    if state is not None:
        seen = job_state(time.time()) == state
        query, total = query.where(seen), total.where(seen)
    if pipeline is not None:
        query, total = query.where(jobs.c.pipeline == pipeline), total.where(jobs.c.pipeline == pipeline)
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.num.desc()).limit(limit).offset(offset)
    with ledger.engine.connect() as conn:
        found = [JobRecord.read(row) for row in conn.execute(query).mappings()]
        return found, int(conn.execute(total).scalar_one())


def page_items(
    ledger: Ledger,
    job: JobRecord,
    *,
    status: str | None = None,
    after: int = -1,
    limit: int = 50,
    with_result: bool = False,
) -> list[RowMapping]:
    """Up to ``limit`` of a job's items after position ``after``, in input order: a range of the
    primary key (or, by status, of the index of unfinished items), however deep into a job of
    millions the page is. No count: a job's counts are kept with it. ``with_result`` adds each
    item's result record."""
    if status is None or status == "succeeded":
        where = [*of_job(job.num, after)] + ([items.c.status == status] if status else [])
        order = items.c.key
    else:
        where, order = [*unfinished(job.num, status), items.c.seq > after], items.c.seq
    columns = (*SUMMARY, "result") if with_result else SUMMARY
    query = select(*(items.c[c] for c in columns)).where(*where).order_by(order).limit(limit)
    with ledger.engine.connect() as conn:
        return list(conn.execute(query).mappings())


def find_item(ledger: Ledger, job: JobRecord, item_id: str) -> RowMapping | None:
    with ledger.engine.connect() as conn:
        query = select(items).where(items.c.job == job.num, items.c.id == item_id)
        return conn.execute(query).mappings().first()


def item_events(ledger: Ledger, job: JobRecord, item_id: str) -> list[RowMapping]:
    """The item's failed attempts and retries, oldest first."""
    query = select(events).where(events.c.job_id == job.id, events.c.item_id == item_id).order_by(events.c.id)
    with ledger.engine.connect() as conn:
        return list(conn.execute(query).mappings())
