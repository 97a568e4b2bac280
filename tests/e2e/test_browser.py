"""A new user's path in a real browser: upload images to the faces pipeline, watch them finish,
open the failed one, download the results and the annotated images."""

from __future__ import annotations

import base64
import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shoal.store import Ledger
from shoal.store.tokens import create_token
from tests.e2e.conftest import EXAMPLE
from tests.helpers import picky_job
from tests.web_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_stray_workers")]

DROP = """([name, data]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
    const zone = document.querySelector("#drop");
    zone.dispatchEvent(new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
}"""


def test_upload_watch_inspect_and_download(
    serve: Callable[..., LiveServer], page: Any, faces_images: Callable[[int], list[Path]], tmp_path: Path
) -> None:
    server = serve(projects=[EXAMPLE], workers=2)
    images = faces_images(6)  # five pictures and one broken file
    dropped, chosen = images[0], images[1:]

    page.goto(server.url + "/submit")
    page.select_option("#pipeline", "faces")
    page.set_input_files("#files", [str(p) for p in chosen])
    page.evaluate(DROP, [dropped.name, base64.b64encode(dropped.read_bytes()).decode()])
    assert page.locator("#chosen li").count() == 6
    page.click("#submit")

    page.wait_for_url("**/jobs/faces-*")
    page.wait_for_selector("body[data-finished='1']", timeout=120_000)
    assert page.text_content("#state") == "completed_with_errors"  # the broken file failed; the job says so
    assert page.text_content("#c-succeeded") == "5"
    assert page.text_content("#c-failed") == "1"
    page.wait_for_function("document.querySelector('#chart-runtime').naturalWidth > 0")
    page.wait_for_function("document.querySelectorAll('#previews img').length === 5")
    page.wait_for_function("[...document.querySelectorAll('#previews img')].every((i) => i.naturalWidth > 0)")
    job_url = page.url

    with page.expect_download() as download:
        page.click("text=results.csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert len(rows) == 5
    assert all(int(r["faces"]) >= 0 for r in rows)
    with page.expect_download() as download:
        page.click("text=whole job (.zip)")
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
    assert sum(n.endswith("/annotated.jpg") for n in names) == 5

    page.click("#failed a")
    page.wait_for_selector("#error-section:not([hidden])")
    assert "CorruptInputError" in page.text_content("#error-line")
    assert page.text_content("#status") == "failed"

    page.goto(job_url)
    page.click("#previews a.tile >> nth=0")
    page.wait_for_selector("#artifacts img")
    page.wait_for_function("document.querySelector('#artifacts img').naturalWidth > 0")
    assert '"faces"' in page.text_content("#result")
    with page.expect_download() as download:
        page.click("#artifacts figcaption a")
    assert download.value.suggested_filename == "annotated.jpg"
    assert Path(download.value.path()).read_bytes()[:2] == b"\xff\xd8"  # a JPEG

    page.goto(server.url + "/")
    row = page.locator("tr[data-job]").first
    row.wait_for()
    assert "faces" in row.text_content()
    assert row.locator(".progress .ok").count() == 1
    page.goto(server.url + "/pipelines")
    assert page.locator("[data-pipeline='faces'] .stages li").count() == 2


def test_the_login_page_lets_a_token_holder_in(serve: Callable[..., LiveServer], page: Any) -> None:
    server = serve(projects=[EXAMPLE], auth=True)
    ledger = Ledger(server.settings.ledger_url)
    token = create_token(ledger, "browser")
    ledger.close()
    page.goto(server.url + "/pipelines")
    page.wait_for_url("**/login?next=/pipelines")
    page.fill("#token", "shoal_not_this_one")
    page.click("#login-form button")
    page.wait_for_selector("#login-error:not([hidden])")
    page.fill("#token", token)
    page.click("#login-form button")
    page.wait_for_url(lambda url: urlsplit(url).path == "/pipelines")
    assert "signed in as browser" in page.text_content("header")
    assert page.locator("[data-pipeline='faces']").count() == 1


CLIPS = """
import cv2
import numpy as np
import shoal

pipeline = shoal.Pipeline("clips")

@pipeline.stage()
def film(item):
    frames = [np.full((48, 64, 3), 25 * i, np.uint8) for i in range(10)]
    for name, codec in (("clip.webm", "VP80"), ("clip-mp4v.mp4", "mp4v")):
        path = item.artifact_path(name)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (64, 48))
        assert writer.isOpened(), codec
        for frame in frames:
            writer.write(frame)
        writer.release()
    return {"frames": len(frames)}
"""


def test_video_artifacts_play_in_the_page_or_say_why_not(
    serve: Callable[..., LiveServer], page: Any, tmp_path: Path
) -> None:
    project = tmp_path / "clips"
    project.mkdir()
    (project / "pipeline.py").write_text(CLIPS)
    (tmp_path / "one.txt").write_text("1\n")
    server = serve(projects=[project])
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "clips", "inputs": [str(tmp_path / "one.txt")]}).json()[
            "id"
        ]
    page.goto(f"{server.url}/jobs/{job_id}")
    page.wait_for_selector("body[data-finished='1']", timeout=120_000)
    assert page.text_content("#state") == "succeeded"
    # WebM plays: the browser decoded its first frame's size
    page.wait_for_function(
        "document.querySelector('#previews video') && document.querySelector('#previews video').videoWidth === 64"
    )
    # mp4v does not play in browsers: a note with a download link stands in its place
    page.wait_for_selector("#previews .unplayable")
    assert "cannot play clip-mp4v.mp4" in page.text_content("#previews .unplayable")
    page.wait_for_function("document.querySelectorAll('#previews video').length === 1")  # the WebM alone plays

    with page.expect_navigation():
        page.click("#previews .tile > a >> nth=0")  # the item link, not the download
    assert "/items/" in page.url
    try:
        page.wait_for_selector("#artifacts .unplayable")
    except Exception as error:  # say what the page showed instead
        shown = page.evaluate("[document.querySelector('#flash')?.textContent, document.body.innerHTML]")
        raise AssertionError(f"no note for the MP4 on {page.url}: {shown}") from error
    page.wait_for_function("document.querySelector('#artifacts video').videoWidth === 64")
    with page.expect_download() as download:
        page.click("#artifacts .unplayable a")
    assert download.value.suggested_filename == "clip-mp4v.mp4"
    assert Path(download.value.path()).read_bytes()[4:8] == b"ftyp"  # an MP4 file, whole

    page.route("**/clip.webm", lambda route: route.fulfill(status=404, body="gone"))  # as if deleted meanwhile
    page.reload()
    page.wait_for_function("document.querySelectorAll('#artifacts .unplayable').length === 2")
    assert "Could not load clip.webm: HTTP 404" in page.text_content("#artifacts")


def test_the_retry_button_runs_the_failed_items_again(
    serve: Callable[..., LiveServer], page: Any, tmp_path: Path
) -> None:
    project, data = picky_job(tmp_path, ["a", "bad", "c"])
    server = serve(projects=[project])
    with server.client() as http:
        job_id = http.post(
            "/api/v1/jobs", json={"pipeline": "picky", "inputs": [str(data)], "options": {"retries": 0}}
        ).json()["id"]
    page.goto(f"{server.url}/jobs/{job_id}")
    page.wait_for_selector("body[data-finished='1']", timeout=120_000)
    assert page.text_content("#state") == "completed_with_errors"
    page.wait_for_selector("#retry:not([hidden])")
    assert "holds a bad row" in page.text_content("#failed")

    (data / "row-1.txt").write_text("b\n")  # the bad row fixed
    with page.expect_navigation():  # the page reloads to follow the job again
        page.click("#retry")
    page.wait_for_selector("body[data-finished='1']", timeout=120_000)
    page.wait_for_function("document.querySelector('#state').textContent === 'succeeded'")
    assert page.text_content("#c-succeeded") == "3"
    assert page.text_content("#c-failed") == "0"
    assert page.locator("#retry").is_hidden()
    assert page.locator("#failed-section").is_hidden()
