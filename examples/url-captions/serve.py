"""Serve a folder over HTTP on 127.0.0.1, the way a web server would serve the images.

    python examples/url-captions/serve.py --port 8765            # serves data/images

Like ``python -m http.server --bind 127.0.0.1``, with two differences for the example: a path
under ``/slow/`` answers only after --delay seconds (``/slow/astronaut.jpg`` is
``/astronaut.jpg``, late), to show a fetch that times out; and requests are not logged.
A query string (``?copy=3``) is ignored, so one file has many URLs.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SLOW = "/slow/"


class Handler(SimpleHTTPRequestHandler):
    """Files from the folder; late under /slow/."""

    delay = 10.0  #: seconds a /slow/ request waits before its answer

    def do_GET(self) -> None:
        if self.path.startswith(SLOW):
            time.sleep(self.delay)
            self.path = self.path[len(SLOW) - 1 :]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: ten thousand requests would bury everything else."""


class Server(ThreadingHTTPServer):
    """A threading HTTP server that takes a client hanging up (one that gave up on a /slow/ URL)
    in its stride, where the standard one prints a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start(folder: Path, port: int = 0, delay: float = 10.0) -> Server:
    """Serve ``folder`` on 127.0.0.1:``port`` (0: any free port) from a background thread; stop
    it with ``shutdown()`` then ``server_close()``."""
    handler = type("FolderHandler", (Handler,), {"delay": delay})
    server = Server(("127.0.0.1", port), partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / "data" / "images")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=10.0, help="seconds a /slow/ URL waits")
    args = parser.parse_args()
    server = start(args.dir, args.port, args.delay)
    print(f"serving {args.dir} on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
