"""GET /jobs/{id}/events: progress as Server-Sent Events.

While the job runs on this server, an event follows each change of its counts (within about a
tenth of a second of an item finishing); otherwise the ledger is read every POLL_S seconds. The
stream sends ``event: progress`` with the counts, and ``event: end`` once the job has finished
or stopped, then closes; a comment every KEEPALIVE_S seconds keeps proxies from closing it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from shoal.store import JobRecord
from shoal.store.queries import find_job
from shoal.web.api.deps import JobDep, PartsDep
from shoal.web.schemas import Problem
from shoal.web.state import Parts

router = APIRouter(prefix="/jobs/{job_id}", tags=["jobs"])
POLL_S = 1.0  #: seconds between ledger reads for a job not running here
QUEUED_S = 0.02  #: seconds between looks for the feed of a job queued here
KEEPALIVE_S = 15.0  #: seconds between keep-alive comments


@router.get(
    "/events",
    summary="Live progress as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Problem}},
)
async def job_events(job: JobDep, parts: PartsDep) -> StreamingResponse:
    return StreamingResponse(
        _stream(parts, job.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _from_ledger(parts: Parts, job_id: str) -> tuple[dict[str, Any], bool]:
    """Counts from the ledger, and whether nothing more will happen to the job here.

    Whether the job is active here is asked before its record is read: a job leaves its slot
    only after its last state is written, so a record read after that is final. Read the other
    way round, a passing state (``interrupted`` while a job that failed to start is being
    recorded as failed) could be taken for the end.
    """
    active = parts.service.active(job_id)
    job: JobRecord | None = find_job(parts.ledger, job_id)
    if job is None:
        return {"state": "cancelled"}, True
    view = parts.views.one(job)
    data = {"state": job.state, **view.counts.model_dump(), "queued": view.queued, "error": view.error}
    if view.live is not None:
        data.update(view.live.model_dump())
    done = job.finished or (job.state != "running" and not active)
    return data, done


async def _stream(parts: Parts, job_id: str) -> AsyncIterator[str]:
    last: dict[str, Any] | None = None
    sent_at = read_at = time.monotonic()
    version = -1
    yield "retry: 2000\n\n"
    while not parts.service.closing:
        feed = parts.service.feed(job_id)
        if feed is not None and not feed.closed:
            version = await feed.changed(version, KEEPALIVE_S)
            data, done = dict(feed.snapshot or {}), False
            if not data or data.get("state") != "running":
                data, done = await run_in_threadpool(_from_ledger, parts, job_id)
        elif last is not None and parts.service.active(job_id) and time.monotonic() - read_at < POLL_S:
            await asyncio.sleep(QUEUED_S)  # queued here: its feed appears the moment it starts
            continue
        else:
            data, done = await run_in_threadpool(_from_ledger, parts, job_id)
            read_at = time.monotonic()
        if data != last:
            last, sent_at = data, time.monotonic()
            yield _event("progress", data)
        elif time.monotonic() - sent_at >= KEEPALIVE_S:
            sent_at = time.monotonic()
            yield ": keep-alive\n\n"
        if done:
            yield _event("end", data)
            return
        if not parts.service.active(job_id) and (feed is None or feed.closed):
            await asyncio.sleep(POLL_S)
