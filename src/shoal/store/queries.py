"""Read-side queries for the web service: pages of jobs and items, filtered, with totals."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import RowMapping, func, select

from shoal.store.ledger import JobRecord, Ledger
from shoal.store.schema import events, items, jobs, of_job

STATUSES = ("pending", "succeeded", "failed", "cancelled")
#: item columns a page of items shows; the result and traceback wait for the item's own page
SUMMARY: tuple[str, ...] = ("id", "seq", "input", "uri", "status", "attempts", "worker", "started_at", "finished_at")
SUMMARY += ("error_stage", "error_type", "error_message")


def find_job(ledger: Ledger, job_id: str) -> JobRecord | None:
    with ledger.engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return JobRecord(**row) if row else None


def page_jobs(
    ledger: Ledger, *, state: str | None = None, pipeline: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[JobRecord], int]:
    """A page of jobs, newest first, and how many match in all."""
    query = select(jobs)
    total = select(func.count()).select_from(jobs)
    if state is not None:
        query, total = query.where(jobs.c.state == state), total.where(jobs.c.state == state)
    if pipeline is not None:
        query, total = query.where(jobs.c.pipeline == pipeline), total.where(jobs.c.pipeline == pipeline)
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.num.desc()).limit(limit).offset(offset)
    with ledger.engine.connect() as conn:
        found = [JobRecord(**row) for row in conn.execute(query).mappings()]
        return found, int(conn.execute(total).scalar_one())


def counts_of(ledger: Ledger, nums: Sequence[int]) -> dict[int, dict[str, int]]:
    """Item counts by status of several jobs (by jobs.num) in one query."""
    found: dict[int, dict[str, int]] = {num: dict.fromkeys(STATUSES, 0) for num in nums}
    if not nums:
        return found
    query = (
        select(items.c.job, items.c.status, func.count())
        .where(items.c.job.in_(list(nums)))
        .group_by(items.c.job, items.c.status)
    )
    with ledger.engine.connect() as conn:
        for job, status, n in conn.execute(query):
            found[job][status] = int(n)
    return found


def page_items(
    ledger: Ledger, job: JobRecord, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[RowMapping], int]:
    """A page of a job's items in input order, and how many match in all."""
    where = list(of_job(job.num))
    if status is not None:
        where.append(items.c.status == status)
    query = select(*(items.c[c] for c in SUMMARY)).where(*where).order_by(items.c.key).limit(limit).offset(offset)
    with ledger.engine.connect() as conn:
        rows = list(conn.execute(query).mappings())
        total = conn.execute(select(func.count()).select_from(items).where(*where)).scalar_one()
    return rows, int(total)


def find_item(ledger: Ledger, job: JobRecord, item_id: str) -> RowMapping | None:
    with ledger.engine.connect() as conn:
        query = select(items).where(items.c.job == job.num, items.c.id == item_id)
        return conn.execute(query).mappings().first()


def item_events(ledger: Ledger, job: JobRecord, item_id: str) -> list[RowMapping]:
    """The item's failed attempts and retries, oldest first."""
    query = select(events).where(events.c.job_id == job.id, events.c.item_id == item_id).order_by(events.c.id)
    with ledger.engine.connect() as conn:
        return list(conn.execute(query).mappings())
