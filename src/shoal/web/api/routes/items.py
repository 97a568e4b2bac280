"""A job's items: pages filtered by status, and one item with its record, error and artifacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from shoal.errors import NotFoundError
from shoal.store.queries import find_item, page_items
from shoal.web.api.deps import ItemId, JobDep, PartsDep
from shoal.web.schemas import ItemDetail, ItemPage, ItemStatus, Problem
from shoal.web.views import item_detail, item_public, item_result

router = APIRouter(prefix="/jobs/{job_id}/items", tags=["items"])


ITEM_LINK = {
    "get_item": {
        "operationId": "get_item",
        "parameters": {"job_id": "$request.path.job_id", "item_id": "$response.body#/items/0/id"},
    }
}


@router.get(
    "",
    summary="A page of a job's items, in input order",
    responses={200: {"description": "a page of items", "links": ITEM_LINK}, 404: {"model": Problem}},
)
def list_items(
    job: JobDep,
    parts: PartsDep,
    status: Annotated[ItemStatus | None, Query(description="only items with this status")] = None,
    after: Annotated[
        int, Query(ge=-1, le=2**40, description="the `next` of the page before: items after this position")
    ] = -1,
    size: Annotated[int, Query(ge=1, le=500)] = 50,
    artifacts: Annotated[bool, Query(description="list each item's artifacts too")] = False,
    results: Annotated[bool, Query(description="each succeeded item's result record too")] = False,
) -> ItemPage:
    """Pages follow each other by position (keyset), so a page deep into a job of millions costs
    what the first does."""
    rows = page_items(parts.ledger, job, status=status, after=after, limit=size, with_result=results)
    listed = [item_public(r, job if artifacts else None, item_result(r) if results else None) for r in rows]
    total = job.counts[status] if status else sum(job.counts.values())
    return ItemPage(items=listed, total=total, size=size, next=rows[-1]["seq"] if len(rows) == size else None)


#: from an item to its files (clients and schemathesis follow them to real artifact names)
ARTIFACT_LINKS = {
    "artifact": {
        "operationId": "artifact",
        "parameters": {
            "job_id": "$request.path.job_id",
            "item_id": "$request.path.item_id",
            "name": "$response.body#/artifacts/0/name",
        },
    },
    "artifacts_zip": {
        "operationId": "artifacts_zip",
        "parameters": {"job_id": "$request.path.job_id", "item": "$request.path.item_id"},
    },
}


@router.get(
    "/{item_id}",
    summary="One item: record, error, attempts, artifacts",
    responses={200: {"description": "the item", "links": ARTIFACT_LINKS}, 404: {"model": Problem}},
)
async def get_item(job: JobDep, item_id: ItemId, parts: PartsDep) -> ItemDetail:
    row = await run_in_threadpool(find_item, parts.ledger, job, item_id)
    if row is None:
        raise NotFoundError(f"job {job.id} has no item {item_id!r}")
    return await run_in_threadpool(item_detail, parts.ledger, job, row)
