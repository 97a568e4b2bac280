"""/docs and /openapi.json behind the token check, with Swagger UI's files served from this
server (from the fastapi-offline package): clusters are often offline, so no CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from shoal.web.api.deps import authenticate

ASSETS = "/docs-static"


def install_docs(app: FastAPI) -> None:
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(ASSETS, StaticFiles(directory=assets), name="docs-static")
    router = APIRouter(include_in_schema=False, dependencies=[Depends(authenticate)])

    @router.get("/openapi.json")
    def openapi(request: Request) -> dict[str, Any]:
        return request.app.openapi()  # type: ignore[no-any-return]

    @router.get("/docs", response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="shoal API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.include_router(router)
