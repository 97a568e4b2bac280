"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from shoal.errors import NotFoundError
from shoal.store import JobRecord, Ledger
from shoal.store.queries import find_job
from shoal.web.fields import PATH_MAX, ItemName, Name, PathText
from shoal.web.service import JobService
from shoal.web.state import Parts


async def get_parts(request: Request) -> Parts:
    parts: Parts = request.app.state.parts
    return parts


PartsDep = Annotated[Parts, Depends(get_parts)]


async def get_ledger(parts: PartsDep) -> Ledger:
    return parts.ledger


async def get_service(parts: PartsDep) -> JobService:
    return parts.service


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
ServiceDep = Annotated[JobService, Depends(get_service)]
JobId = Annotated[Name, Path(min_length=1, max_length=128, description="a job id")]
ItemId = Annotated[ItemName, Path(min_length=1, max_length=200, description="an item id")]
ArtifactName = Annotated[PathText, Path(min_length=1, max_length=PATH_MAX, description="a file in the item's folder")]


async def get_caller(request: Request) -> str | None:
    """The name of the caller's token, as the TokenGate middleware found it (None without auth)."""
    return getattr(request.state, "caller", None)


Caller = Annotated[str | None, Depends(get_caller)]


async def get_job(job_id: JobId, parts: PartsDep) -> JobRecord:
    known = parts.views.remembered(job_id)
    job = known[0] if known is not None else await run_in_threadpool(find_job, parts.ledger, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r} (see GET /api/v1/jobs)")
    return job


JobDep = Annotated[JobRecord, Depends(get_job)]
