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

    assert sorted(r["result"]["loud"] for r in read_results(result.out)) == ["ONE", "ONE", "TWO"]  # rows alike
    assert result.report is not None
    assert result.report["items"]["duplicates"] == 0
    errors = {e["input"]: e for e in read_errors(result.out)}
    assert errors["rows.jsonl:2"]["error_type"] == "InputError"
    assert "rows.jsonl:2: not valid JSON" in errors["rows.jsonl:2"]["message"]
    assert "rows.jsonl:3: expected a JSON object, found list" in errors["rows.jsonl:3"]["message"]


MIXED = """
import shoal
pipeline = shoal.Pipeline("mixed")

@pipeline.stage()
def read(item):
    if item.uri is None:
        return {"n": item.meta.get("n") or item.meta.get("text")}
    return {"text": item.read_text().strip()}
"""


def test_inputs_that_cannot_be_decoded_or_delimited_fail_alone_and_the_rest_run(
    home: Path, make_project: MakeProject
) -> None:
    data = home / "data"
    data.mkdir()
    (data / "plain.txt").write_text("plain\n")
    with open(bytes(data) + b"/caf\xe9.txt", "wb") as handle:  # a Latin-1 file name
        handle.write(b"latin\n")
    latin = home / "latin1.csv"
    latin.write_bytes(b"n,label\n1,a\n2,b\n3,caf\xe9\n4,d\n5,e\n")
    binary = home / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    quoted = home / "quote.csv"
    opens = '"never closed'
    quoted.write_text("n,label\n" + "".join(f"{i},{opens if i == 10 else 'ok'}\n" for i in range(60)))
    jsonl = home / "rows.jsonl"
    jsonl.write_bytes(b'{"text": "one"}\n{"text": "caf\xe9"}\n{"text": "\\udc80"}\n{"text": "four"}\n')
    listing = home / "uris.txt"
    listing.write_bytes(str(data / "plain.txt").encode() + b"\n" + bytes(data) + b"/caf\xe9.txt\n")
    project = make_project(MIXED)
    inputs = [str(data), str(latin), str(binary), str(quoted), str(jsonl), str(listing)]

    result = shoal.run(project, inputs, workers=2, retries=0)

    errors = {e["input"]: e["message"] for e in read_errors(result.out)}
    assert result.exit_code == 1
    assert result.counts["succeeded"] == 1 + 4 + 59 + 2, errors  # the plain file once: the list repeats it
    assert "caf\\xe9.txt: the file name is not UTF-8 text" in errors[f"{data}/caf\\xe9.txt"]
    assert errors["latin1.csv:4"] == "latin1.csv:4: not UTF-8 text (say, a Latin-1 byte)"
    assert errors["binary.csv:1"].startswith("binary.csv:1: ")
    assert "quote.csv:12: a quoted field opens here and is never closed" in errors["quote.csv:12"]
    assert errors["rows.jsonl:2"] == "rows.jsonl:2: not UTF-8 text"
    assert "cannot be stored as given" in errors["rows.jsonl:3"]
    assert errors["uris.txt:2"] == "uris.txt:2: not UTF-8 text"
    assert len(errors) == 7
    numbers = sorted(r["result"]["n"] for r in read_results(result.out) if str(r["input"]).startswith("quote.csv"))
    assert numbers == sorted(str(i) for i in range(60) if i != 10)
