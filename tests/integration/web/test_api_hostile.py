"""Hostile values never give a 500: every field is checked at the edge, and a refusal names it.

Each request goes over one kept-alive connection that may not be reopened, so a request that
broke the connection fails the next one too. Bodies are written by hand: JSON's NaN, Infinity
and lone surrogates (``\\udc80``) travel as a hostile client would send them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.web_server import LiveServer, one_connection, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def _names(body: Any, field: tuple[Any, ...]) -> bool:
    """Whether a 422's detail names the field: a pydantic location, or the dotted name in a message."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return any(tuple(e["loc"][: len(field)]) == field for e in detail)
    return isinstance(detail, str) and ".".join(map(str, field[1:])) in detail


def _check(answers: list[tuple[str, int, Any, tuple[Any, ...] | None]]) -> None:
    """Every answer a 4xx (never a 5xx), a 422 naming its field where one is expected."""
    bad = [
        (label, status, detail)
        for label, status, detail, field in answers
        if not 400 <= status < 500 or (field is not None and (status != 422 or not _names(detail, field)))
    ]
    assert not bad, "\n".join(f"{label}: {status} {str(detail)[:300]}" for label, status, detail in bad)


LONG = "a" * 256  #: one path component over Linux's 255 bytes
WIDE = "é" * 128  #: 128 characters, 256 bytes
EMOJI = "\U0001f600" * 64  #: 64 characters, 256 bytes


def _input_cases(data: Path) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(label, the JSON body, the field a 422 must name) for POST /jobs."""
    d = str(data)

    def inputs(value: str) -> str:
        return '{"pipeline": "tool", "inputs": [' + value + "]}"

    def options(text: str) -> str:
        return '{"pipeline": "tool", "inputs": ["' + d + '"], "options": {' + text + "}}"

    field = ("body", "inputs", 0)
    return [
        ("input with NUL", inputs(json.dumps(d + "/a\x00b")), field),
        ("input that is only NUL", inputs('"\\u0000"'), field),
        ("input with a lone low surrogate", inputs(json.dumps(d + "/\udc80")), field),
        ("input with a lone high surrogate", inputs(json.dumps(d + "/\ud800x")), field),
        ("URL with a lone surrogate", inputs('"s3://bucket/\\udc80"'), field),
        ("URL with NUL", inputs('"https://example.com/a\\u0000"'), field),
        ("component of 256 bytes", inputs(json.dumps(f"{d}/{LONG}")), field),
        ("component of 256 bytes in 128 characters", inputs(json.dumps(f"{d}/{WIDE}")), field),
        ("component of 256 bytes in 64 emoji", inputs(json.dumps(f"{d}/{EMOJI}")), field),
        ("glob with a long component", inputs(json.dumps(f"{d}/{LONG}*.txt")), field),
        ("file URL with a long component", inputs(json.dumps(f"file://{d}/{LONG}")), field),
        ("path of 4097 bytes", inputs(json.dumps("/" + "ab/" * 1365 + "c")), field),
        ("path of 4096 bytes (PATH_MAX counts the final NUL)", inputs(json.dumps("/" + "ab/" * 1365)), field),
        ("URL of 9000 bytes", inputs(json.dumps("https://example.com/" + "a" * 9000)), field),
        ("second input hostile", '{"pipeline": "tool", "inputs": ["' + d + '", "\\udc80"]}', ("body", "inputs", 1)),
        ("pipeline with NUL", '{"pipeline": "to\\u0000ol", "inputs": []}', ("body", "pipeline")),
        ("pipeline with a lone surrogate", '{"pipeline": "\\udc80", "inputs": []}', ("body", "pipeline")),
        ("options.timeout NaN", options('"timeout": NaN'), ("body", "options", "timeout")),
        ("options.timeout Infinity", options('"timeout": Infinity'), ("body", "options", "timeout")),
        ("options.timeout -Infinity", options('"timeout": -Infinity'), ("body", "options", "timeout")),
        ("options.timeout 1e309", options('"timeout": 1e309'), ("body", "options", "timeout")),
        ("options.timeout 'nan'", options('"timeout": "nan"'), ("body", "options", "timeout")),
        ("options.retry_backoff NaN", options('"retry_backoff": NaN'), ("body", "options", "retry_backoff")),
        ("options.fetch_timeout Infinity", options('"fetch_timeout": Infinity'), ("body", "options", "fetch_timeout")),
        ("options.limit 10**30", options(f'"limit": {10**30}'), ("body", "options", "limit")),
        ("options.limit 2**63", options(f'"limit": {2**63}'), ("body", "options", "limit")),
        ("options.limit 2**53 + 1", options(f'"limit": {2**53 + 1}'), ("body", "options", "limit")),
        ("options.limit 1e300", options('"limit": 1e300'), ("body", "options", "limit")),
        ("options.retries 10**30", options(f'"retries": {10**30}'), ("body", "options", "retries")),
    ]


def test_hostile_job_fields_answer_422_naming_the_field(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    data = files(2)
    (data / "loop").symlink_to(data / "loop")
    server = serve(projects=[tool_project()])
    loop = ("a link to itself", json.dumps({"pipeline": "tool", "inputs": [f"{data}/loop/x"]}), None)
    with one_connection(server) as ask:
        cases = [*_input_cases(data), loop]
        answers = [(label, *ask("POST", "/api/v1/jobs", body), field) for label, body, field in cases]
        assert ask("GET", "/healthz")[0] == 200  # on the same connection, after all of them
    _check(answers)


def test_hostile_values_are_refused_where_inputs_are_confined_too(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    """With --allow-path every local input is resolved against the allowed folders: the same
    values must be refused there as well (the check used to raise OSError and ValueError)."""
    data = files(2)
    (data / "loop").symlink_to(data / "loop")
    (data / "a").symlink_to(data / "b")
    (data / "b").symlink_to(data / "a")
    server = serve(projects=[tool_project()], allow_paths=[data])
    loops = [
        ("a link to itself", json.dumps({"pipeline": "tool", "inputs": [f"{data}/loop/x"]}), None),
        ("two links to each other", json.dumps({"pipeline": "tool", "inputs": [f"{data}/a"]}), None),
    ]
    with one_connection(server) as ask:
        cases = [*_input_cases(data), *loops]
        answers = [(label, *ask("POST", "/api/v1/jobs", body), field) for label, body, field in cases]
    _check(answers)


def test_hostile_stream_items_answer_422_and_the_stream_lives_on(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    data = files(2)
    server = serve(projects=[tool_project()])
    good = {"uri": str(data / "file-000.txt")}
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    with one_connection(server) as ask:
        status, job = ask("POST", "/api/v1/jobs", '{"pipeline": "tool", "stream": true}')
        assert status == 202, job
        path = f"/api/v1/jobs/{job['id']}/items"

        META = ("body", "items", 0, "meta")

        def item(text: str) -> str:
            return '{"items": [' + text + "]}"

        cases = [
            ("uri with NUL", item('{"uri": "a\\u0000b"}'), ("body", "items", 0, "uri")),
            ("uri with a lone surrogate", item('{"uri": "\\udc80"}'), ("body", "items", 0, "uri")),
            ("uri with a long component", item(json.dumps({"uri": f"{data}/{LONG}"})), ("body", "items", 0, "uri")),
            ("id with NUL", item('{"uri": "x", "id": "a\\u0000"}'), ("body", "items", 0, "id")),
            ("id with a lone surrogate", item('{"uri": "x", "id": "\\ud800"}'), ("body", "items", 0, "id")),
            ("meta with NaN", item('{"uri": "x", "meta": {"v": NaN}}'), META),
            ("meta with Infinity in a list", item('{"uri": "x", "meta": {"v": [1, Infinity]}}'), META),
            ("meta with 1e309", item('{"uri": "x", "meta": {"v": 1e309}}'), META),
            ("meta with a lone surrogate", item('{"uri": "x", "meta": {"v": "\\udc80"}}'), META),
            ("meta key a lone surrogate", item('{"uri": "x", "meta": {"\\udc80": 1}}'), META),
            ("meta with 2**64", item(f'{{"uri": "x", "meta": {{"v": {2**64}}}}}'), META),
            ("meta nested 300 deep", item(json.dumps({"uri": "x", "meta": deep})), META),
            ("second item hostile", item(json.dumps(good) + ', {"uri": "\\udc80"}'), ("body", "items", 1, "uri")),
        ]
        answers = [(label, *ask("POST", path, body), field) for label, body, field in cases]
        assert ask("POST", path, json.dumps({"items": [good], "close": True})) == (202, {"accepted": 1, "closed": True})
    _check(answers)
    with server.client() as http:
        end = wait_for_end(http, job["id"])[-1][1]
    assert (end["state"], end["succeeded"], end["total"]) == ("succeeded", 1, 1)  # nothing hostile got in


def test_hostile_path_and_query_parameters_answer_4xx(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        job = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1))]}).json()["id"]
        wait_for_end(http, job)
        item = http.get(f"/api/v1/jobs/{job}/items").json()["items"][0]["id"]
    base = f"/api/v1/jobs/{job}"
    cases = [
        ("job id with NUL", "/api/v1/jobs/a%00b", ("path", "job_id")),
        ("job id with NUL, events", "/api/v1/jobs/a%00b/events", ("path", "job_id")),
        ("item id with NUL", f"{base}/items/a%00b", ("path", "item_id")),
        ("artifact name with NUL", f"{base}/artifacts/{item}/a%00b", ("path", "name")),
        ("artifact name of 256 bytes", f"{base}/artifacts/{item}/{LONG}", ("path", "name")),
        ("artifact name of 256 bytes in 128 characters", f"{base}/artifacts/{item}/{quote(WIDE)}", ("path", "name")),
        ("artifact folder of 256 bytes", f"{base}/artifacts/{item}/{LONG}/x.txt", ("path", "name")),
        ("artifact path of 4097 bytes", f"{base}/artifacts/{item}/" + "ab/" * 1365 + "cd", ("path", "name")),
        ("artifact item with NUL", f"{base}/artifacts/a%00b/copy.txt", ("path", "item_id")),
        ("artifact item of 256 bytes in 128 characters", f"{base}/artifacts/{quote(WIDE)}/x", ("path", "item_id")),
        ("zip item with NUL", f"{base}/artifacts.zip?item=a%00b", ("query", "item")),
        ("zip item of 256 bytes in 128 characters", f"{base}/artifacts.zip?item={quote(WIDE)}", ("query", "item")),
        ("zip item of 200 emoji", f"{base}/artifacts.zip?item={quote(EMOJI)}", ("query", "item")),
        ("list filter with NUL", "/api/v1/jobs?pipeline=a%00b", ("query", "pipeline")),
        ("pipeline name with NUL", "/api/v1/pipelines/a%00b", None),
        ("a huge range", f"{base}/artifacts/{item}/copy.txt", None),
    ]
    with one_connection(server) as ask:
        answers = []
        for label, path, field in cases:
            headers = {"Range": "bytes=" + "9" * 5000 + "-"} if "range" in label else None
            answers.append((label, *ask("GET", path, None, headers), field))
        answers.append(("a normal request after them", *ask("GET", f"{base}/artifacts/{item}/copy.txt"), None))
    assert answers.pop()[1] == 200
    huge = answers.pop()
    assert huge[1] == 200 or 400 <= huge[1] < 500, huge  # the file whole, or refused: never a 500
    _check(answers)


def test_hostile_logins_answer_4xx(serve: Callable[..., LiveServer]) -> None:
    server = serve(auth=True)
    with one_connection(server) as ask:
        answers = [
            ("token with a lone surrogate", *ask("POST", "/api/v1/session", '{"token": "\\udc80"}'), ("body", "token")),
            ("token with NUL", *ask("POST", "/api/v1/session", '{"token": "a\\u0000"}'), ("body", "token")),
            ("bearer token not latin-1", *ask("GET", "/api/v1/jobs", None, {"Authorization": "Bearer \xff\xfe"}), None),
            ("malformed cookie", *ask("GET", "/api/v1/jobs", None, {"Cookie": 'shoal_token="\\'}), None),
        ]
    _check(answers)


def test_hostile_upload_forms_answer_4xx_and_long_names_are_shortened(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])

    def form(pipeline: str, options: str | None = None, filename: str = "a.txt") -> bytes:
        parts = [f'--b\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\n{pipeline}\r\n']
        if options is not None:
            parts.append(f'--b\r\nContent-Disposition: form-data; name="options"\r\n\r\n{options}\r\n')
        parts.append(
            f'--b\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n\r\nabc\r\n--b--\r\n'
        )
        return "".join(parts).encode()

    multipart = {"content-type": "multipart/form-data; boundary=b"}
    cases = [
        ("options.timeout NaN", form("tool", '{"timeout": NaN}'), "timeout"),
        ("options.timeout Infinity", form("tool", '{"timeout": Infinity}'), "timeout"),
        ("options.limit 2**63", form("tool", f'{{"limit": {2**63}}}'), "limit"),
        ("options not an object", form("tool", "[1, 2]"), "options"),
        ("options nested 2000 deep", form("tool", "[" * 2000 + "]" * 2000), "options"),
        ("pipeline with NUL", form("to\x00ol"), "pipeline"),
    ]
    with one_connection(server) as ask:
        answers = [(label, *ask("POST", "/api/v1/jobs/upload", body, multipart), (None, f)) for label, body, f in cases]
        wide = ask("POST", "/api/v1/jobs/upload", form("tool", filename="é" * 200 + ".txt"), multipart)
    _check(answers)
    assert wide[0] == 202, wide
    [folder] = wide[1]["inputs"]
    [stored] = Path(folder).iterdir()
    assert len(stored.name.encode()) <= 255
    assert stored.name.endswith(".txt")
    with server.client() as http:
        assert wait_for_end(http, wide[1]["id"])[-1][1]["succeeded"] == 1


def test_hostile_values_answer_4xx_on_postgresql_too(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path], postgres_url: str
) -> None:
    """PostgreSQL refuses NUL in text, which SQLite keeps: every string reaches it checked."""
    data = files(1)
    server = serve(projects=[tool_project()], db_url=postgres_url)
    with one_connection(server) as ask:
        answers = [
            ("list filter with NUL", *ask("GET", "/api/v1/jobs?pipeline=a%00b"), ("query", "pipeline")),
            ("job id with NUL", *ask("GET", "/api/v1/jobs/a%00b"), ("path", "job_id")),
            ("job id with NUL, cancel", *ask("POST", "/api/v1/jobs/a%00b/cancel"), ("path", "job_id")),
            ("job id with NUL, items", *ask("POST", "/api/v1/jobs/a%00b/items", '{"items": []}'), ("path", "job_id")),
        ]
        answers += [(label, *ask("POST", "/api/v1/jobs", body), field) for label, body, field in _input_cases(data)]
    _check(answers)
