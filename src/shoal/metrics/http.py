"""Serving a registry: an HTTP endpoint on its own thread, an ASGI app, or the bare exposition.

``serve`` is what `shoal run --metrics-port` and `shoal worker --metrics-port` use; the web
service mounts ``asgi_app(registry)`` at /metrics (or calls ``exposition`` from a route).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_asgi_app, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder

from shoal.errors import ConfigError

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class Endpoint:
    """A running /metrics HTTP server; ``close()`` stops it and frees the port."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        self.host, self.port = server.server_address[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


POLL_S = 0.02  #: seconds; how soon close() takes effect (the stock server waits up to 0.5 s)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not news: no line per request on stderr."""


def serve(registry: CollectorRegistry, host: str, port: int) -> Endpoint:
    """Serve ``registry`` on host:port (port 0 picks a free one) from a daemon thread."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = make_server(host, port, make_wsgi_app(registry), Server, handler_class=_Quiet)
    except OSError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {why}; choose another --metrics-port") from None
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name="shoal-metrics", daemon=True
    )
    thread.start()
    return Endpoint(server, thread)


def asgi_app(registry: CollectorRegistry) -> ASGIApp:
    """An ASGI app answering every GET with the registry's exposition (mount it at /metrics)."""
    return make_asgi_app(registry)


def exposition(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The registry's metrics as (body, content type), in the format the Accept header asks for."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
