"""/docs and /openapi.json (behind the token check like the API), with Swagger UI's files served
from this server (from the fastapi-offline package): clusters are often offline, so no CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-static"


def install_docs(app: FastAPI) -> None:
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(ASSETS, StaticFiles(directory=assets), name="docs-static")
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    def openapi(request: Request) -> dict[str, Any]:
        return with_security(request.app.openapi())

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


BEARER = {"type": "http", "scheme": "bearer", "description": "a token from `shoal token create NAME`"}


def with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer token (checked by TokenGate, not by route dependencies) on the API's operations."""
    if "bearer" in schema.get("components", {}).get("securitySchemes", {}):
        return schema
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/session"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    return schema
