"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from shoal.errors import NotFoundError
from shoal.store import JobRecord, Ledger
from shoal.store.queries import find_job
from shoal.web.security import COOKIE
from shoal.web.service import JobService
from shoal.web.state import Parts

_bearer = HTTPBearer(auto_error=False, description="a token from `shoal token create NAME`")


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
JobId = Annotated[str, Path(min_length=1, max_length=128, description="a job id")]
ItemId = Annotated[str, Path(min_length=1, max_length=200, description="an item id")]


async def authenticate(
    request: Request,
    parts: PartsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str | None:
    """The caller's token name; raises 401/403 errors when a token is needed and missing or wrong.

    Async, like the other cheap dependencies: a sync one would cost a thread hop per request.
    A token not checked in the last seconds is looked up on a worker thread."""
    header = f"Bearer {credentials.credentials}" if credentials is not None else None
    cookie = request.cookies.get(COOKIE)
    if parts.guard.remembers(header, cookie):
        return parts.guard.check(header, cookie)
    return await run_in_threadpool(parts.guard.check, header, cookie)


Caller = Annotated[str | None, Depends(authenticate)]


async def get_job(job_id: JobId, parts: PartsDep) -> JobRecord:
    known = parts.views.remembered(job_id)
    job = known[0] if known is not None else await run_in_threadpool(find_job, parts.ledger, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r} (see GET /api/v1/jobs)")
    return job


JobDep = Annotated[JobRecord, Depends(get_job)]
