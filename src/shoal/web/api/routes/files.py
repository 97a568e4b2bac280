"""Downloads: results (.jsonl, .csv, .parquet), errors.csv, the report and its charts, artifacts, zips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from shoal.errors import RangeNotSatisfiableError
from shoal.run_folder import is_local
from shoal.web import downloads
from shoal.web.api.deps import ArtifactName, ItemId, JobDep, PartsDep
from shoal.web.fields import ItemName
from shoal.web.schemas import Problem

router = APIRouter(prefix="/jobs/{job_id}", tags=["downloads"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem}}
MEDIA = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "errors": "text/csv; charset=utf-8",
}


def _result(parts: PartsDep, job: JobDep, kind: str) -> FileResponse:
    path = downloads.result_file(parts.ledger, job, kind, parts.exports)
    filename = f"{job.id}-{downloads.RESULT_FILES[kind]}"
    return FileResponse(path, media_type=MEDIA[kind], filename=filename)


@router.get("/results.jsonl", summary="Results, one JSON record per succeeded item", responses=NOT_FOUND)
def results_jsonl(job: JobDep, parts: PartsDep) -> FileResponse:
    return _result(parts, job, "jsonl")


@router.get("/results.csv", summary="Results as CSV, nested fields as dotted columns", responses=NOT_FOUND)
def results_csv(job: JobDep, parts: PartsDep) -> FileResponse:
    return _result(parts, job, "csv")


@router.get("/results.parquet", summary="Results as Parquet", responses=NOT_FOUND)
def results_parquet(job: JobDep, parts: PartsDep) -> FileResponse:
    return _result(parts, job, "parquet")


@router.get("/errors.csv", summary="Failed items with their errors", responses=NOT_FOUND)
def errors_csv(job: JobDep, parts: PartsDep) -> FileResponse:
    return _result(parts, job, "errors")


@router.get("/report", summary="The report (report.json): counts, timings, speedup", responses=NOT_FOUND)
def report(job: JobDep, parts: PartsDep) -> dict[str, Any]:
    return downloads.report(parts.ledger, job)


@router.get(
    "/report/{chart}",
    summary="A chart of the report: runtime.png (Gantt) or throughput.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
)
def report_chart(job: JobDep, chart: Literal["runtime.png", "throughput.png"], parts: PartsDep) -> Response:
    cache = "max-age=3600" if job.finished else "no-store"
    return Response(downloads.chart(parts.ledger, job, chart), media_type="image/png", headers={"Cache-Control": cache})


@router.get("/artifacts.zip", summary="The whole job, or one item's artifacts, as a zip", responses=NOT_FOUND)
def artifacts_zip(
    job: JobDep,
    parts: PartsDep,
    item: Annotated[ItemName | None, Query(max_length=200, description="only this item's artifacts")] = None,
) -> FileResponse:
    path = downloads.job_zip(parts.ledger, job, parts.exports, item)
    name = f"{job.id}-{item}.zip" if item else f"{job.id}.zip"
    return FileResponse(path, media_type="application/zip", filename=name, background=BackgroundTask(_remove, path))


@router.get("/artifacts/{item_id}/{name:path}", summary="One artifact of one item", responses=NOT_FOUND)
def artifact(job: JobDep, item_id: ItemId, name: ArtifactName, parts: PartsDep, request: Request) -> Response:
    path = downloads.artifact(job, item_id, name)
    media = downloads.media_type(path)
    if is_local(path):  # Range requests (seeking in a video) answered by Starlette
        return FileResponse(path, media_type=media, content_disposition_type="inline", filename=path.name)
    handle, size = downloads.open_remote(path)  # in an object store: streamed through
    try:
        span = downloads.byte_range(request.headers.get("range"), size)
    except RangeNotSatisfiableError:
        handle.close()
        raise
    headers = {"Content-Disposition": f"inline; filename*=utf-8''{quote(path.name)}", "Accept-Ranges": "bytes"}
    if span is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(downloads.chunks(handle), media_type=media, headers=headers)
    first, last = span
    headers |= {"Content-Length": str(last - first + 1), "Content-Range": f"bytes {first}-{last}/{size}"}
    return StreamingResponse(
        downloads.chunks(handle, first, last - first + 1), status_code=206, media_type=media, headers=headers
    )


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
