"""/models: the registry's versions and aliases, changed here as with `shoal models`, and the
traffic each version answers now. Serving follows a change within a second or two."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shoal import registry
from shoal.web.api.deps import Caller, PartsDep
from shoal.web.fields import Name

router = APIRouter(prefix="/models", tags=["models"])
AliasName = Annotated[Name, Path(min_length=1, max_length=64, description="production, canary, shadow or any name")]


class PromoteBody(BaseModel):
    version: str = Field(min_length=1, max_length=32)


class RollbackBody(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class AliasBody(BaseModel):
    version: str = Field(min_length=1, max_length=32)
    weight: float | None = Field(None, gt=0, le=1, description="a canary's share of traffic")
    options: dict[str, Any] | None = Field(None, description="a canary's or shadow's guardrails")


def _version(record: registry.ModelVersion) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k != "folder"}


@router.get("", summary="Pipelines in the registry, with their aliases")
def list_models(parts: PartsDep) -> list[dict[str, Any]]:
    ledger = parts.ledger
    return [
        {
            "pipeline": name,
            "versions": len(registry.versions(ledger, name)),
            "aliases": {a.alias: a.version for a in registry.aliases(ledger, name).values()},
        }
        for name in registry.pipelines(ledger)
    ]


@router.get("/{pipeline}", summary="A pipeline's versions, aliases, history and live traffic")
def get_model(pipeline: Name, parts: PartsDep) -> dict[str, Any]:
    ledger = parts.ledger
    traffic = parts.serving.traffic(pipeline) if pipeline in parts.catalog.names else {}
    return {
        "pipeline": pipeline,
        "versions": [_version(v) for v in registry.versions(ledger, pipeline)],
        "aliases": {name: alias.__dict__ for name, alias in registry.aliases(ledger, pipeline).items()},
        "events": registry.events(ledger, pipeline),
        "traffic": traffic,
    }


@router.post("/{pipeline}/promote", summary="Make a version production")
async def promote(
    pipeline: Name, body: Annotated[PromoteBody, Body()], parts: PartsDep, caller: Caller
) -> dict[str, Any]:
    alias = await run_in_threadpool(registry.promote, parts.ledger, pipeline, body.version, by=caller or "api")
    return alias.__dict__


@router.post("/{pipeline}/rollback", summary="Production back to the version before")
async def rollback(
    pipeline: Name, parts: PartsDep, caller: Caller, body: Annotated[RollbackBody | None, Body()] = None
) -> dict[str, Any]:
    reason = body.reason if body is not None else None
    alias = await run_in_threadpool(registry.rollback, parts.ledger, pipeline, by=caller or "api", reason=reason)
    return alias.__dict__


@router.put("/{pipeline}/aliases/{alias}", summary="Point an alias at a version (a canary with its share)")
async def put_alias(
    pipeline: Name, alias: AliasName, body: Annotated[AliasBody, Body()], parts: PartsDep, caller: Caller
) -> dict[str, Any]:
    kind = alias if alias in (registry.CANARY, registry.SHADOW) else "alias"
    found = await run_in_threadpool(
        registry.set_alias,
        parts.ledger,
        pipeline,
        alias,
        body.version,
        by=caller or "api",
        weight=body.weight,
        options=body.options,
        kind=kind,
    )
    return found.__dict__


@router.delete("/{pipeline}/aliases/{alias}", summary="Remove an alias (a canary's or shadow's traffic stops)")
async def delete_alias(pipeline: Name, alias: AliasName, parts: PartsDep, caller: Caller) -> dict[str, Any]:
    dropped = await run_in_threadpool(registry.drop_alias, parts.ledger, pipeline, alias, by=caller or "api")
    if not dropped:
        from shoal.errors import NotFoundError

        raise NotFoundError(f"pipeline {pipeline!r} has no alias {alias!r}")
    return {"pipeline": pipeline, "alias": alias, "removed": True}
