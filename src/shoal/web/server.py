"""Run the app with uvicorn; Ctrl-C or SIGTERM stops jobs cleanly so the next start resumes them."""

from __future__ import annotations

import logging
from types import FrameType

from shoal.web.app import create_app
from shoal.web.settings import ServerSettings
from shoal.web.state import Parts

SHUTDOWN_GRACE = 3  #: seconds open connections (SSE streams) get to close on shutdown


def serve(settings: ServerSettings) -> None:
    """Serve until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("shoal").setLevel(logging.INFO)
    app = create_app(settings)  # a bad project or database fails here, before anything is announced
    parts: Parts = app.state.parts
    names = ", ".join(parts.catalog.names) or "none (add --project DIR)"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"shoal: serving on http://{host}:{settings.port} (pipelines: {names}; data in {settings.data_root})")
    if settings.auth_required:
        print("shoal: tokens required: create one with `shoal token create NAME`", flush=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            parts.service.begin_shutdown()  # ends SSE streams now, rather than after the grace time
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        proxy_headers=False,
    )
    Server(config).run()
