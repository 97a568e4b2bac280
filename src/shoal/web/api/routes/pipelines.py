"""GET /pipelines: what this server can run."""

from __future__ import annotations

from fastapi import APIRouter

from shoal.project import Project
from shoal.web.api.deps import PartsDep
from shoal.web.fields import Name
from shoal.web.schemas import PipelinePublic, StagePublic

router = APIRouter(prefix="/pipelines", tags=["pipelines"])


def pipeline_public(project: Project) -> PipelinePublic:
    return PipelinePublic(
        name=project.pipeline.name,
        stages=[StagePublic(name=s.name, batch_size=s.batch_size) for s in project.pipeline.stages],
        fingerprint=project.fingerprint,
        project=project.spec,
        inputs=[str(v) for v in project.config.get("run", {}).get("inputs", [])],
    )


@router.get("", summary="List the pipelines this server runs")
def list_pipelines(parts: PartsDep) -> list[PipelinePublic]:
    return [pipeline_public(p) for p in parts.catalog]


@router.get("/{name}", summary="One pipeline", responses={404: {"description": "unknown pipeline"}})
def get_pipeline(name: Name, parts: PartsDep) -> PipelinePublic:
    return pipeline_public(parts.catalog.get(name))
