"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoal.errors import NotFoundError
from shoal.store import JobRecord, Ledger
from shoal.store.queries import find_job
from shoal.web.security import COOKIE
from shoal.web.service import JobService
from shoal.web.state import Parts

_bearer = HTTPBearer(auto_error=False, description="a token from `shoal token create NAME`")


def get_parts(request: Request) -> Parts:
    parts: Parts = request.app.state.parts
    return parts


PartsDep = Annotated[Parts, Depends(get_parts)]


def get_ledger(parts: PartsDep) -> Ledger:
    return parts.ledger


def get_service(parts: PartsDep) -> JobService:
    return parts.service


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
ServiceDep = Annotated[JobService, Depends(get_service)]
JobId = Annotated[str, Path(min_length=1, max_length=128, description="a job id")]
ItemId = Annotated[str, Path(min_length=1, max_length=200, description="an item id")]


def authenticate(
    request: Request,
    parts: PartsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str | None:
    """The caller's token name; raises 401/403 errors when a token is needed and missing or wrong."""
    header = f"Bearer {credentials.credentials}" if credentials is not None else None
    return parts.guard.check(header, request.cookies.get(COOKIE))


Caller = Annotated[str | None, Depends(authenticate)]


def get_job(job_id: JobId, ledger: LedgerDep) -> JobRecord:
    job = find_job(ledger, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r} (see GET /api/v1/jobs)")
    return job


JobDep = Annotated[JobRecord, Depends(get_job)]
