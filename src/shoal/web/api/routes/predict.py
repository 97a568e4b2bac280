"""POST /pipelines/{name}/predict: answers online, from the pipeline's warm replicas.

The body is JSON, ``{"inputs": [{"uri": ...} | {"data": text} | {"data_base64": ...}, ...],
"timeout_ms": N}`` (each input may carry ``meta``, a row of fields, or be only that), or
multipart/form-data files, one input each. The answer lists one outcome per input, in the
request's order: ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {...}}`` (a failed
input is not a failed request), each with the version that made it. Load is refused with 429
and Retry-After, a request past its deadline gets 504 naming it, a version that cannot start 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shoal.errors import (
    ConfigError,
    DeadlineError,
    ServingUnavailableError,
    ShoalError,
    UnknownPipelineError,
    UploadTooLargeError,
)
from shoal.serving import MAX_REPLICAS, Serving
from shoal.web.api.deps import PartsDep
from shoal.web.fields import Name
from shoal.web.settings import ServerSettings
from shoal.web.uploads import new_upload_dir, receive

router = APIRouter(prefix="/pipelines", tags=["predict"])
MAX_INPUTS = 1024  #: inputs in one request
MAX_JSON_BYTES = 64 * 2**20


class PredictInput(BaseModel):
    """One input: a file the server may read, text or bytes sent inline, and/or a row of fields."""

    uri: str | None = Field(None, max_length=4096)
    data: str | None = None
    data_base64: str | None = None
    meta: dict[str, Any] | None = None


class PredictRequest(BaseModel):
    inputs: list[PredictInput] = Field(min_length=1, max_length=MAX_INPUTS)
    timeout_ms: float | None = Field(None, gt=0, description="answer within this, or 504")


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` written in place: OpenAPI tools cannot follow a local ``$defs``."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


class ServingUpdate(BaseModel):
    replicas: int = Field(ge=1, le=MAX_REPLICAS)


def _serving(parts: Any) -> Serving:
    serving: Serving = parts.serving
    return serving


@router.post(
    "/{name}/predict",
    summary="Answer inputs online, in the request's order",
    responses={
        404: {"description": "unknown pipeline"},
        413: {"description": "body too large"},
        422: {"description": "malformed body"},
        429: {"description": "overloaded: Retry-After says when to try again"},
        503: {"description": "the pipeline's code does not load or its replicas do not start"},
        504: {"description": "no answer within the deadline"},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": _inlined(PredictRequest.model_json_schema())},
                "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {"type": "array"}}}},
            },
            "required": True,
        }
    },
)
async def predict(name: Name, request: Request, parts: PartsDep) -> Response:
    serving = _serving(parts)
    arrived = time.monotonic()
    if name not in parts.catalog.names:  # a 404 before anything is read
        raise UnknownPipelineError(name, parts.catalog.names)
    folder = Scratch(parts.settings, name)
    try:
        inputs, timeout_ms = await _inputs(request, folder, parts.settings.max_upload_bytes)
        timeout_s = timeout_ms / 1000 if timeout_ms else None
        key = request.headers.get("x-shoal-key")  # the same key always meets the same canary decision
        pool, future, deadline_s = await run_in_threadpool(serving.predict, name, inputs, timeout_s, key)
        labels = (name, pool.version)
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), timeout=deadline_s)
        except TimeoutError:
            future.cancel()
            _count(serving, labels, "timeout", arrived)
            raise DeadlineError(f"no answer within the request's deadline of {deadline_s:g} s") from None
        except ShoalError as exc:
            outcome = "timeout" if isinstance(exc, DeadlineError) else "unavailable"
            _count(serving, labels, outcome, arrived)
            raise
        _count(serving, labels, "ok", arrived)
        await run_in_threadpool(serving.record, pool, inputs, outputs, time.monotonic() - arrived, folder.made)
        answer = {
            "pipeline": name,
            "version": pool.version,
            "outputs": outputs,
            "latency_ms": round((time.monotonic() - arrived) * 1000, 3),
        }
        # Encoded here, not by FastAPI: its jsonable_encoder walks every number of every result
        # (384 of them for one embedding), which cost the server more than the model's own work.
        return Response(orjson.dumps(answer), media_type="application/json")
    except ShoalError as exc:
        if serving.metrics is not None and not isinstance(exc, DeadlineError | ServingUnavailableError):
            serving.metrics.requests.labels(name, "", "rejected").inc()
        raise
    finally:
        if folder.made is not None:
            shutil.rmtree(folder.made, ignore_errors=True)


def _count(serving: Serving, labels: tuple[str, str], outcome: str, arrived: float) -> None:
    if serving.metrics is not None:
        serving.metrics.requests.labels(*labels, outcome).inc()
        serving.metrics.latency.labels(*labels).observe(time.monotonic() - arrived)


class Scratch:
    """A request's own folder for the files it carries, made when the first is stored: most
    requests carry their inputs in ``meta``, and a folder made and removed for each of them took
    a fifth of the server's time under load."""

    def __init__(self, settings: ServerSettings, pipeline: str) -> None:
        self.settings, self.pipeline = settings, pipeline
        self.made: Path | None = None

    @property
    def path(self) -> Path:
        if self.made is None:
            self.made = new_upload_dir(self.settings.data_root / "serving" / self.pipeline)
        return self.made


async def _inputs(request: Request, folder: Scratch, limit: int) -> tuple[list[dict[str, Any]], float | None]:
    """The request's inputs as work items, files stored in ``folder``; errors name the input."""
    kind = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if kind.startswith("multipart/form-data"):
        upload = await receive(kind, length, request.stream(), folder.path, limit)
        if not upload.files:
            raise ConfigError("the multipart body holds no files: send one or more as `files`")
        if len(upload.files) > MAX_INPUTS:
            raise ConfigError(f"{len(upload.files)} files: at most {MAX_INPUTS} inputs a request")
        timeout = upload.fields.get("timeout_ms")
        try:
            timeout_ms = float(timeout) if timeout else None
        except ValueError:
            raise ConfigError(f"timeout_ms {timeout!r} is not a number") from None
        return [{"uri": str(path), "input": path.name} for path in upload.files], timeout_ms
    if not kind.startswith("application/json"):
        raise ConfigError('send JSON ({"inputs": [...]}) or multipart/form-data files')
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > min(limit, MAX_JSON_BYTES):
            raise UploadTooLargeError(min(limit, MAX_JSON_BYTES))
    try:
        parsed = PredictRequest.model_validate(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"the body is not JSON: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"the body is not a predict request: {_first_error(exc)}") from None
    return [_item(n, given, folder) for n, given in enumerate(parsed.inputs)], parsed.timeout_ms


def _item(n: int, given: PredictInput, folder: Scratch) -> dict[str, Any]:
    sources = [k for k in ("uri", "data", "data_base64") if getattr(given, k) is not None]
    if len(sources) > 1:
        raise ConfigError(f"input {n}: give one of uri, data or data_base64, not {' and '.join(sources)}")
    if not sources and given.meta is None:
        raise ConfigError(f"input {n}: give a uri, data, data_base64 or meta")
    item: dict[str, Any] = {"input": f"input {n}"}
    if given.meta is not None:
        item["meta"] = given.meta
    if given.uri is not None:
        item["uri"] = item["input"] = given.uri
    elif given.data is not None or given.data_base64 is not None:
        if given.data is not None:
            data = given.data.encode("utf-8", "surrogatepass")  # a lone surrogate is the stage's to judge
        else:
            try:
                data = base64.b64decode(given.data_base64 or "", validate=True)
            except (binascii.Error, ValueError) as exc:  # ValueError: a character that is not ASCII
                raise ConfigError(f"input {n}: data_base64 is not base64: {exc}") from None
        path = folder.path / f"input-{n}"
        path.write_bytes(data)
        item["uri"] = str(path)
    return item


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return f"{where}: {first.get('msg')}"
    return str(exc)


@router.get("/{name}/serving", summary="The pipeline's online versions, replicas and queue")
async def serving_status(name: Name, parts: PartsDep) -> dict[str, Any]:
    return await run_in_threadpool(_serving(parts).status, name)


@router.put(
    "/{name}/serving",
    status_code=202,
    summary="Serve the pipeline with this many replicas: they warm, then take over",
)
async def set_serving(name: Name, update: Annotated[ServingUpdate, Body()], parts: PartsDep) -> dict[str, Any]:
    serving = _serving(parts)
    await run_in_threadpool(serving.set_replicas, name, update.replicas)
    return await run_in_threadpool(serving.status, name)
