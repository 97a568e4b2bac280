"""Bad inputs fail (or succeed) one by one with a message naming the input and the cause."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

import shoal
from tests.conftest import MakeProject
from tests.helpers import read_errors, read_results

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

READER = """
import shoal

pipeline = shoal.Pipeline("reader")

@pipeline.stage()
def read(item):
    if item.input.endswith(".jpg"):
        height, width = item.read_image().shape[:2]
        return {"width": width, "height": height}
    return {"text": item.read_text().strip()}
"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow.txt":
            time.sleep(5)
        if self.path in ("/ok.txt", "/slow.txt"):
            body = b"hello from http\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_each_bad_input_fails_alone_with_its_cause(home: Path, make_project: MakeProject, http_server: str) -> None:
    data = home / "data"
    data.mkdir()
    good = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))[1].tobytes()
    (data / "photo with spaces café.jpg").write_bytes(good)
    (data / "good.jpg").write_bytes(good)
    (data / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    (data / "empty.jpg").write_bytes(b"")
    (data / "note.txt").write_text("plain text\n")
    listing = home / "inputs.txt"
    listing.write_text(
        "\n".join(
            [
                "# one input a line",
                str(data / "photo with spaces café.jpg"),
                "data/good.jpg",
                str(data / "corrupt.jpg"),
                str(data / "empty.jpg"),
                str(data / "not-there.jpg"),
                "",
                str(data / "note.txt"),
                f"{http_server}/ok.txt",
                f"{http_server}/missing.txt",
                f"{http_server}/slow.txt",
            ]
        )
    )
    project = make_project(READER)
    result = shoal.run(project, [str(listing)], workers=2, retries=1, retry_backoff=0.05, fetch_timeout=1)

    assert result.counts == {"pending": 0, "succeeded": 4, "failed": 5, "cancelled": 0}
    results = {r["input"]: r for r in read_results(result.out)}
    assert results[str(data / "photo with spaces café.jpg")]["result"] == {"width": 60, "height": 40}
    assert results[str(data / "photo with spaces café.jpg")]["id"].startswith("photo_with_spaces_cafe.jpg-")
    assert results[str(data / "note.txt")]["result"] == {"text": "plain text"}
    assert results[f"{http_server}/ok.txt"]["result"] == {"text": "hello from http"}

    errors = {e["input"]: e for e in read_errors(result.out)}
    expected = {
        str(data / "corrupt.jpg"): ("CorruptInputError", "not a readable image", "1"),
        str(data / "empty.jpg"): ("CorruptInputError", "file is empty (0 bytes)", "1"),
        str(data / "not-there.jpg"): ("FetchError", "no such file", "1"),
        f"{http_server}/missing.txt": ("FetchError", "not found (HTTP 404)", "1"),
        f"{http_server}/slow.txt": ("FetchError", "timed out after 1 s", "2"),
    }
    assert set(errors) == set(expected)
    for name, (kind, cause, attempts) in expected.items():
        error = errors[name]
        assert (error["error_type"], error["attempts"]) == (kind, attempts), error
        assert cause in error["message"]
        assert name in error["message"]  # the message names the input
        assert error["stage"] == "read"


def test_bad_rows_of_a_jsonl_file_fail_alone(home: Path, make_project: MakeProject) -> None:
    rows = home / "rows.jsonl"
    rows.write_text('{"text": "one"}\n{"text": broken\n[1, 2]\n{"text": "one"}\n{"text": "two"}\n')
    project = make_project(
        """
        import shoal
        pipeline = shoal.Pipeline("rows")

        @pipeline.stage()
        def shout(item):
            return {"loud": item.meta["text"].upper()}
        """
    )
    result = shoal.run(project, [str(rows)], workers=1)

    assert sorted(r["result"]["loud"] for r in read_results(result.out)) == ["ONE", "TWO"]
    assert result.report is not None
    assert result.report["items"]["duplicates"] == 1  # the repeated row ran once
    errors = {e["input"]: e for e in read_errors(result.out)}
    assert errors["rows.jsonl:2"]["error_type"] == "InputError"
    assert "rows.jsonl:2: not valid JSON" in errors["rows.jsonl:2"]["message"]
    assert "rows.jsonl:3: expected a JSON object, found list" in errors["rows.jsonl:3"]["message"]
