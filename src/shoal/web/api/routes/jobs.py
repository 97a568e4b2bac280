"""Jobs: submit (JSON or an upload), list, look at, cancel, retry."""

from __future__ import annotations

import json
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from shoal.errors import ConfigError
from shoal.store.queries import page_jobs
from shoal.web import uploads
from shoal.web.api.deps import Caller, JobDep, PartsDep
from shoal.web.fields import Name, check_name
from shoal.web.schemas import (
    Appended,
    ItemsAppend,
    JobCreate,
    JobList,
    JobOptions,
    JobPublic,
    JobState,
    Problem,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: OpenAPI links from a created job to what can be asked about it (clients and schemathesis follow them)
JOB_LINKS = {
    name: {"operationId": name, "parameters": {"job_id": "$response.body#/id"}}
    for name in (
        "get_job",
        "list_items",
        "job_events",
        "cancel_job",
        "retry_job",
        "append_items",
        "report",
        "results_csv",
        "artifacts_zip",
    )
}
CREATED: dict[int | str, dict[str, Any]] = {
    202: {"description": "the job, queued (or finished already)", "links": JOB_LINKS}
}

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["pipeline", "files"],
                "properties": {
                    "pipeline": {"type": "string", "description": "a name from GET /api/v1/pipelines"},
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "options": {"$ref": "#/components/schemas/JobOptions"},
                },
            },
            "encoding": {"options": {"contentType": "application/json"}},  # a part holding JobOptions as JSON
        }
    },
}


@router.post(
    "",
    status_code=202,
    summary="Submit a job over inputs the server can read",
    responses={
        **CREATED,
        404: {"model": Problem, "description": "unknown pipeline"},
        422: {"description": "bad input"},
    },
)
def create_job(body: JobCreate, parts: PartsDep, caller: Caller) -> JobPublic:
    """Queue a job; a finished job for the same code and inputs is returned instead (unless options.new)."""
    if body.stream:
        if body.inputs:
            raise ConfigError("a streaming job takes its items from POST /api/v1/jobs/{id}/items: give no inputs")
        return parts.views.one(parts.service.submit_stream(body.pipeline, body.options.flags(), by=caller))
    job = parts.service.submit(body.pipeline, body.inputs, body.options.flags(), by=caller)
    return parts.views.one(job)


@router.post(
    "/{job_id}/items",
    status_code=202,
    summary="Add items to a streaming job",
    responses={404: {"model": Problem}, 409: {"model": Problem, "description": "not streaming, or finished"}},
)
def append_items(job: JobDep, body: ItemsAppend, parts: PartsDep) -> Appended:
    """The items are stored durably before the answer; each one's latency counts from now."""
    accepted = parts.service.append(job.id, [i.model_dump(exclude_none=True) for i in body.items], close=body.close)
    return Appended(accepted=accepted, closed=body.close)


@router.post(
    "/upload",
    status_code=202,
    summary="Upload files and submit a job over them",
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        **CREATED,
        404: {"model": Problem, "description": "unknown pipeline"},
        413: {"model": Problem, "description": "upload larger than the limit"},
        422: {"model": Problem, "description": "bad form"},
    },
)
async def upload_job(request: Request, parts: PartsDep, caller: Caller) -> JobPublic:
    """Store the files under the data folder (safe names, size limit) and run the pipeline over them."""
    folder = uploads.new_upload_dir(parts.settings.data_root)
    received = await uploads.receive(
        request.headers.get("content-type", ""),
        request.headers.get("content-length"),
        request.stream(),
        folder,
        parts.settings.max_upload_bytes,
    )
    try:
        pipeline, options = _form(received)
        job = parts.service.submit(pipeline, [str(folder)], options, by=caller, upload=folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return parts.views.one(job)


def _form(received: uploads.Upload) -> tuple[str, dict[str, object]]:
    """The form's fields, checked like the JSON body's: a 422 names the field at fault."""
    pipeline = received.fields.get("pipeline", "").strip()
    if not pipeline:
        raise ConfigError("the form needs a 'pipeline' field naming a pipeline from GET /api/v1/pipelines")
    try:
        check_name(pipeline)
    except ValueError as exc:
        raise ConfigError(f"form field 'pipeline' {exc}") from None
    if not received.files:
        raise ConfigError("the form has no files: add one or more 'files' parts")
    try:
        options = JobOptions.model_validate(json.loads(received.fields.get("options") or "{}"))
    except ValidationError as exc:
        problems = "; ".join(".".join(["options", *map(str, e["loc"])]) + f": {e['msg']}" for e in exc.errors())
        raise ConfigError(f"form field 'options' is not valid JobOptions: {problems}") from None
    except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser's depth
        raise ConfigError(f"form field 'options' must be JobOptions as JSON: {exc}") from None
    return pipeline, options.flags()


@router.get("", summary="List jobs, newest first")
def list_jobs(
    parts: PartsDep,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    pipeline: Annotated[Name | None, Query(max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 20,
) -> JobList:
    found, total = page_jobs(parts.ledger, state=state, pipeline=pipeline, limit=size, offset=(page - 1) * size)
    return JobList(jobs=parts.views.many(found), total=total, page=page, size=size)


@router.get(
    "/{job_id}",
    summary="A job: state, counts, timings",
    response_model=JobPublic,
    responses={404: {"model": Problem}},
)
async def get_job(job: JobDep, parts: PartsDep) -> Response:
    """The most polled route: a finished job's JSON is kept, so answering costs no query."""
    known = parts.views.remembered(job.id)
    if known is None:
        view = await run_in_threadpool(parts.views.one, job)
        return Response(view.model_dump_json(), media_type="application/json")
    return Response(known[2], media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    summary="Cancel a job",
    responses={404: {"model": Problem}, 409: {"model": Problem, "description": "the job has finished"}},
)
def cancel_job(job: JobDep, parts: PartsDep) -> JobPublic:
    """Stop the job now; its items not yet finished become cancelled."""
    return parts.views.one(parts.service.cancel(job.id))


@router.delete(
    "/{job_id}",
    status_code=204,
    summary="Remove a job",
    responses={404: {"model": Problem}, 409: {"model": Problem, "description": "the job is queued or running"}},
)
def delete_job(job: JobDep, parts: PartsDep) -> Response:
    """Remove the job for good: its items and records, its run folder, its uploads and the files
    made for its downloads."""
    parts.service.remove(job.id)
    parts.views.forget(job.id)
    shutil.rmtree(parts.exports / job.id, ignore_errors=True)
    return Response(status_code=204)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    summary="Retry a job's failed items",
    responses={
        404: {"model": Problem},
        409: {"model": Problem, "description": "the job is not finished, or has no failed items that can run"},
        422: {"model": Problem, "description": "the job's inputs cannot be read again"},
    },
)
def retry_job(
    job: JobDep,
    parts: PartsDep,
    same_inputs: Annotated[
        bool, Query(description="run each failed item with the row it read first, not its inputs read again")
    ] = False,
) -> JobPublic:
    """Run the job's failed items again, and only those, with the code the server serves now and
    its inputs read again (a CSV/JSONL row fixed since runs as it reads now); each gets its
    retries again, and its new attempts are recorded on the same item."""
    parts.views.forget(job.id)
    return parts.views.one(parts.service.retry(job.id, same_inputs=same_inputs))
