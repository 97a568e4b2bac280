"""What the API takes and gives, as pydantic models: the OpenAPI schema at /docs comes from here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shoal.web.fields import COUNT_MAX, Name, PathText, Text, check_json

JobState = Literal["pending", "running", "succeeded", "completed_with_errors", "failed", "interrupted", "cancelled"]
ItemStatus = Literal["pending", "succeeded", "failed", "cancelled"]


class StagePublic(BaseModel):
    name: str
    batch_size: int | None = Field(description="items per call; null: one item at a time")


class PipelinePublic(BaseModel):
    name: str
    stages: list[StagePublic]
    fingerprint: str = Field(description="hash of the project's code; jobs record it")
    project: str = Field(description="the project folder on the server")
    inputs: list[str] = Field(description="default inputs from shoal.toml")


class JobOptions(BaseModel):
    """Options of one job; unset ones come from the project's shoal.toml, then defaults.

    Every number is finite and bounded: NaN or a limit past any counter would fail the job after
    it was accepted, or never let it end.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    retries: int | None = Field(None, ge=0, le=100, description="attempts after the first failure")
    retry_backoff: float | None = Field(None, ge=0, le=3600, description="seconds before the first retry")
    timeout: float | None = Field(None, gt=0, le=86400, description="seconds one item may take")
    fetch_timeout: float | None = Field(None, gt=0, le=3600, description="seconds to download one remote input")
    limit: int | None = Field(None, ge=1, le=COUNT_MAX, description="process only the first N inputs")
    new: bool = Field(False, description="start a new job even if the same one ran before")

    def flags(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class JobCreate(BaseModel):
    """A job to run: a pipeline the server serves and the inputs to run it over."""

    model_config = ConfigDict(extra="forbid")

    pipeline: Name = Field(min_length=1, max_length=64, description="a name from GET /api/v1/pipelines")
    inputs: list[PathText] = Field(
        default_factory=list,
        max_length=1000,
        description="paths on the server, globs, URI lists, CSV/JSONL files or URLs; empty: the project's defaults",
    )
    options: JobOptions = JobOptions.model_validate({})
    stream: bool = Field(
        False, description="a streaming job: no inputs now; it takes items POSTed to /jobs/{id}/items until closed"
    )


class StreamItem(BaseModel):
    """One item for a streaming job: a file the workers can read."""

    model_config = ConfigDict(extra="forbid")

    uri: PathText = Field(min_length=1, max_length=8192, description="a path the server may read, or a URL")
    id: Name | None = Field(None, min_length=1, max_length=128, description="its id [default: one per message]")
    meta: Annotated[dict[str, Any], AfterValidator(check_json)] = Field(
        default_factory=dict, description="fields kept with the item (item.meta): finite numbers, 64 KiB at most"
    )


class ItemsAppend(BaseModel):
    """Items for a streaming job, and whether the job should end after them."""

    model_config = ConfigDict(extra="forbid")

    items: list[StreamItem] = Field(default_factory=list, max_length=10_000)
    close: bool = Field(False, description="no more items: the job ends once these are done")


class Appended(BaseModel):
    accepted: int
    closed: bool


class Counts(BaseModel):
    total: int
    succeeded: int
    failed: int
    pending: int
    cancelled: int


class RunningNow(BaseModel):
    """Items one worker process runs now, and how far the stage said it has got."""

    items: list[str] = Field(description="ids of the items in this stage call (a batch's first 8)")
    count: int = Field(description="items in this stage call")
    stage: str | None
    seconds: float = Field(description="seconds since this stage call began")
    done: int = Field(description="what the stage has done of this call (frames, rows), by item.progress; 0: not said")
    total: int = Field(description="what it has to do in all; 0: not said")


class Live(BaseModel):
    """Progress of a job running on this server now."""

    in_flight: int
    retries: int
    rate: float = Field(description="items finished per second in this run")
    eta_s: float | None = Field(description="seconds left at the current rate, when the total is known")
    ingested: bool = Field(description="every input is read, so the total is final")
    running: list[RunningNow] = Field(
        default_factory=list, description="what the workers run now, longest running first (local workers only)"
    )


class JobPublic(BaseModel):
    id: str
    pipeline: str
    state: JobState
    counts: Counts
    live: Live | None = None
    inputs: list[str]
    options: dict[str, Any]
    fingerprint: str
    created_at: float = Field(description="UTC epoch seconds")
    updated_at: float
    finished_at: float | None
    started_at: float | None = Field(
        None, description="when its latest run began (a retried or resumed job was created long before); null before"
    )
    duration_s: float | None = Field(description="seconds its latest run took (or has run now); null before one began")
    queued: bool = Field(description="waiting for a free slot on this server")
    error: str | None = Field(None, description="why the job could not run here, if it could not")
    submitted_by: str | None = None
    out: str = Field(description="the run folder on the server")


class JobList(BaseModel):
    jobs: list[JobPublic]
    total: int
    page: int
    size: int


class ArtifactPublic(BaseModel):
    name: str
    size: int
    kind: Literal["image", "video", "other"]
    url: str


class ItemPublic(BaseModel):
    id: str
    seq: int
    input: str
    status: ItemStatus
    attempts: int
    worker: str | None
    started_at: float | None
    finished_at: float | None
    error_stage: str | None
    error_type: str | None
    error_message: str | None
    artifacts: list[ArtifactPublic] | None = Field(None, description="with ?artifacts=true")
    result: Any = Field(None, description="with ?results=true: its merged stage results (null unless it succeeded)")


class ItemPage(BaseModel):
    items: list[ItemPublic]
    total: int = Field(description="items with this status (all items without one), as the job keeps them")
    size: int
    next: int | None = Field(
        description="pass as ?after= for the page that follows; null on the last page", default=None
    )


class Attempt(BaseModel):
    kind: str = Field(description="retry, failed, isolated or requeued")
    attempt: int
    at: float
    worker: str | None
    stage: str | None
    error_type: str | None
    message: str | None


class ItemDetail(ItemPublic):
    uri: str | None
    meta: Any = None
    result: Any = None
    seconds: dict[str, float] | None = None
    error_traceback: str | None
    attempts_log: list[Attempt]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: str
    running: int
    queued: int


class TokenCheck(BaseModel):
    token: Text = Field(min_length=1, max_length=200)


class Problem(BaseModel):
    """An error: ``detail`` says what went wrong and how to fix it."""

    detail: str
    known: list[str] | None = Field(None, description="for an unknown pipeline: the known ones")
    limit: int | None = Field(None, description="for an upload too large: the limit in bytes")
