"""GET /healthz: the one route that never needs a token, for load balancers and compose files."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from shoal import __version__
from shoal.errors import ShoalError
from shoal.web.api.deps import PartsDep
from shoal.web.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Is the server up and its database reachable?", responses={503: {}})
def healthz(parts: PartsDep) -> Health:
    try:
        with parts.ledger.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise ShoalError(f"the ledger database is unreachable: {type(exc).__name__}") from exc
    running, queued = parts.service.load()
    return Health(
        status="ok", version=__version__, database=parts.ledger.engine.dialect.name, running=running, queued=queued
    )
