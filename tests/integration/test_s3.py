"""Inputs read from, and run folders written to, an S3-compatible server on loopback (moto)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from tests.conftest import MakeProject
from tests.engines import EngineUnderTest, require_service

pytestmark = pytest.mark.integration

ARTIFACTS = """
import shoal
pipeline = shoal.Pipeline("s3copy")

@pipeline.stage()
def shout(item):
    text = item.read_text().strip()
    item.write_artifact("loud.txt", text.upper())
    item.write_artifact("nested/deeper.txt", text * 2)
    return {"text": text, "local": item.path.name}
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port for this module, its endpoint and credentials in
    the environment (worker processes inherit them; fsspec caches filesystems per process).

    The server runs in a process of its own: run on a thread here, the files it leaves for the
    garbage collector warned (as errors) in whichever test happened to be running."""
    pytest.importorskip("s3fs")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, "the moto server exited"
            assert time.monotonic() < deadline, "the moto server did not start"
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():  # fmt: skip
            patch.setenv(name, value)
        yield endpoint
    server.terminate()
    server.wait(10)


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """An s3fs filesystem to look with, and a fresh bucket holding six text files under in/."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    fs.bucket = f"shoal-{uuid.uuid4().hex[:8]}"
    fs.mkdir(fs.bucket)
    for i in range(6):
        fs.pipe(f"{fs.bucket}/in/part {i}.txt", f"item {i}\n".encode())
    return fs


@pytest.mark.parametrize("engine_kind", ["local", "celery-redis"])
def test_inputs_from_s3_and_run_folder_on_s3(home: Path, make_project: MakeProject, s3: Any, engine_kind: str) -> None:
    engine = EngineUnderTest(engine_kind, home)
    if engine.celery:
        require_service(6379)
    project = make_project(ARTIFACTS)
    run = f"{s3.bucket}/runs/one"
    try:
        result = shoal.run(project, [f"s3://{s3.bucket}/in/"], out=f"s3://{run}", **engine.flags(project))
    finally:
        engine.stop_workers()

    assert result.counts["succeeded"] == 6
    s3.invalidate_cache()
    records = [json.loads(line) for line in s3.cat(f"{run}/results.jsonl").decode().splitlines()]
    assert sorted(r["result"]["text"] for r in records) == [f"item {i}" for i in range(6)]
    assert {r["input"] for r in records} == {f"s3://{s3.bucket}/in/part {i}.txt" for i in range(6)}
    for record in records:
        base = f"{run}/artifacts/{record['id']}"
        assert s3.cat(f"{base}/loud.txt").decode() == record["result"]["text"].upper()
        assert s3.cat(f"{base}/nested/deeper.txt").decode() == record["result"]["text"] * 2
    for name in ("results.csv", "errors.csv", "report.json", "performance.txt", "runtime.png", "throughput.png"):
        assert s3.exists(f"{run}/{name}"), name
    assert json.loads(s3.cat(f"{run}/report.json"))["items"]["succeeded"] == 6
    assert not s3.exists(f"{run}/artifacts/.staging")


def test_the_server_shows_and_zips_artifacts_kept_on_s3(
    home: Path, make_project: MakeProject, s3: Any, serve: Callable[..., Any]
) -> None:
    project = make_project(ARTIFACTS)
    run = f"{s3.bucket}/runs/served"
    result = shoal.run(project, [f"s3://{s3.bucket}/in/"], out=f"s3://{run}", workers=1)
    assert result.counts["succeeded"] == 6

    server = serve(projects=[project])  # the same ledger (SHOAL_HOME): it lists the job run above
    with server.client() as http:
        job = http.get(f"/api/v1/jobs/{result.job_id}").json()
        assert job["out"] == f"s3://{run}"
        item = http.get(f"/api/v1/jobs/{result.job_id}/items", params={"size": 1}).json()["items"][0]
        detail = http.get(f"/api/v1/jobs/{result.job_id}/items/{item['id']}").json()
        text = detail["result"]["text"]
        assert [(a["name"], a["size"]) for a in detail["artifacts"]] == [
            ("loud.txt", len(text)),
            ("nested/deeper.txt", 2 * len(text)),
        ]
        for artifact in detail["artifacts"]:
            response = http.get(artifact["url"])
            assert response.status_code == 200
            assert response.content == s3.cat(f"{run}/artifacts/{item['id']}/{artifact['name']}")
            assert response.headers["content-length"] == str(artifact["size"])
        assert http.get(f"/api/v1/jobs/{result.job_id}/artifacts/{item['id']}/nope.txt").status_code == 404
        deeper = detail["artifacts"][1]["url"]  # a video player seeks with Range requests
        part = http.get(deeper, headers={"Range": "bytes=2-4"})
        assert part.status_code == 206
        assert part.content == (text * 2).encode()[2:5]
        assert part.headers["content-range"] == f"bytes 2-4/{2 * len(text)}"
        beyond = http.get(deeper, headers={"Range": f"bytes={2 * len(text)}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{2 * len(text)}"

        archive = zipfile.ZipFile(io.BytesIO(http.get(f"/api/v1/jobs/{result.job_id}/artifacts.zip").content))
        names = set(archive.namelist())
        assert sum(n.startswith("artifacts/") and n.endswith("/loud.txt") for n in names) == 6
        assert archive.read(f"artifacts/{item['id']}/loud.txt").decode() == text.upper()
        one = http.get(f"/api/v1/jobs/{result.job_id}/artifacts.zip", params={"item": item["id"]})
        assert sorted(zipfile.ZipFile(io.BytesIO(one.content)).namelist()) == [
            f"{item['id']}/loud.txt",
            f"{item['id']}/nested/deeper.txt",
        ]
