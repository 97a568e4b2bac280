"""Bad input never yields a 500: unknown names 404, malformed bodies 422, big uploads 413."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def test_an_unknown_pipeline_answers_404_listing_the_known_ones(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project("tool"), tool_project("other")])
    with server.client() as http:
        response = http.post("/api/v1/jobs", json={"pipeline": "nope", "inputs": [str(files(1))]})
        assert response.status_code == 404
        assert response.json()["known"] == ["other", "tool"]
        assert "unknown pipeline 'nope'" in response.json()["detail"]
        assert http.get("/api/v1/pipelines/nope").status_code == 404
        assert http.get("/api/v1/jobs/no-such-job").status_code == 404
        assert http.get("/api/v1/jobs/no-such-job/events").status_code == 404


def test_malformed_json_answers_422_with_the_fields_at_fault(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        broken = http.post("/api/v1/jobs", content=b'{"pipeline": ', headers={"content-type": "application/json"})
        assert broken.status_code == 422
        wrong = http.post(
            "/api/v1/jobs", json={"pipeline": "tool", "inputs": "x", "options": {"retries": -1, "bogus": 1}}
        )
        assert wrong.status_code == 422
        fields = {tuple(e["loc"]) for e in wrong.json()["detail"]}
        assert {("body", "inputs"), ("body", "options", "retries"), ("body", "options", "bogus")} <= fields
        missing = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": ["/no/such/folder"]})
        assert missing.status_code == 422
        assert "input not found: /no/such/folder" in missing.json()["detail"]
        assert http.get("/api/v1/jobs", params={"state": "weird"}).status_code == 422
        assert http.get("/api/v1/jobs", params={"page": 0}).status_code == 422


def test_uploaded_file_names_never_escape_the_upload_folder(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], home: Path
) -> None:
    server = serve(projects=[tool_project()])
    names = [
        "../../escape.txt",
        "/etc/passwd",
        "..\\..\\win.txt",
        ".hidden",
        "a/b/c d.txt",
        "c d.txt",
        "odd<>|name?.txt",
    ]
    with server.client() as http:
        response = http.post(
            "/api/v1/jobs/upload",
            data={"pipeline": "tool"},
            files=[("files", (name, f"content {i}".encode())) for i, name in enumerate(names)],
        )
        assert response.status_code == 202, response.text
        job = response.json()
        [folder] = job["inputs"]
        uploads = Path(folder)
        assert uploads.parent == home / "shoal-runs" / "uploads"
        stored = sorted(p.name for p in uploads.iterdir())
        assert stored == sorted(
            ["escape.txt", "passwd", "win.txt", "hidden", "c d.txt", "c d (2).txt", "odd___name_.txt"]
        )
        assert not (home / "shoal-runs" / "escape.txt").exists()
        assert wait_for_end(http, job["id"])[-1][1]["succeeded"] == len(names)


def test_an_upload_over_the_limit_answers_413_naming_the_limit(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], home: Path
) -> None:
    server = serve(projects=[tool_project()], max_upload_mb=0.01)  # 10,485 bytes
    big = [("files", ("big.bin", b"x" * 20_000))]
    with server.client() as http:
        declared = http.post("/api/v1/jobs/upload", data={"pipeline": "tool"}, files=big)
        assert declared.status_code == 413
        assert declared.json()["limit"] == 10485
        assert "the limit is 10485 bytes" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as bytes arrive
            yield b'--b\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\ntool\r\n'
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n\r\n'
            for _ in range(10):
                yield b"y" * 4096
            yield b"\r\n--b--\r\n"

        streamed = http.post(
            "/api/v1/jobs/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        assert streamed.status_code == 413
    assert not any((home / "shoal-runs" / "uploads").iterdir())  # nothing of either was kept


def test_bad_upload_forms_answer_422(serve: Callable[..., LiveServer], tool_project: Callable[..., Path]) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        no_files = http.post("/api/v1/jobs/upload", data={"pipeline": "tool"}, files={"x": ("", b"")})
        assert no_files.status_code == 422
        not_multipart = http.post("/api/v1/jobs/upload", json={"pipeline": "tool"})
        assert not_multipart.status_code == 422
        bad_options = http.post(
            "/api/v1/jobs/upload", data={"pipeline": "tool", "options": "{nope"}, files={"files": ("a.txt", b"a")}
        )
        assert bad_options.status_code == 422
        unknown = http.post("/api/v1/jobs/upload", data={"pipeline": "nope"}, files={"files": ("a.txt", b"a")})
        assert unknown.status_code == 404


def test_artifact_names_cannot_reach_outside_the_item_folder(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1))]}).json()["id"]
        wait_for_end(http, job_id)
        item = http.get(f"/api/v1/jobs/{job_id}/items").json()["items"][0]["id"]
        base = f"/api/v1/jobs/{job_id}/artifacts"
        assert http.get(f"{base}/{item}/copy.txt").status_code == 200
        for path in (
            f"{item}/../../report.json",
            f"{item}/%2e%2e/%2e%2e/job.json",
            "..%2F..%2Fledger.db/x",
            ".staging/x",
        ):
            assert http.get(f"{base}/{path}").status_code == 404, path
        assert http.get(f"/api/v1/jobs/{job_id}/artifacts.zip", params={"item": ".."}).status_code == 404


def test_a_server_on_a_shared_address_reads_only_the_folders_it_is_allowed(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path], tmp_path: Path
) -> None:
    allowed = files(2, name="allowed")
    server = serve(projects=[tool_project()], allow_paths=[allowed])
    with server.client() as http:
        outside = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(2, name="secret"))]})
        assert outside.status_code == 422
        assert "outside the folders this server reads" in outside.json()["detail"]
        sneaky = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [f"{allowed}/../secret"]})
        assert sneaky.status_code == 422
        inside = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(allowed)]})
        assert inside.status_code == 202
        wait_for_end(http, inside.json()["id"])
