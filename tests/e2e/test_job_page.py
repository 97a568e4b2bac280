"""The job page in a real browser: the results of a pipeline that makes no images as a table,
the elapsed time of the job's latest run, charts at full size, a bar that never lags the state
badge, and the Delete button."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.states import FINISHED
from tests.helpers import picky_job
from tests.web_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_stray_workers")]

#: a pipeline without artifacts: each item's text, its length and a nested record
TALLY = """
import shoal
pipeline = shoal.Pipeline("tally")

@pipeline.stage()
def tally(item):
    text = item.read_text().strip()
    shape = {"vowels": sum(c in "aeiou" for c in text), "upper": text.upper()}
    return {"text": text, "length": len(text), "shape": shape, "echo": text * 10}
"""
ROWS = 55  #: one page of 50 results and the next of 5

#: before the page's own scripts: note the bar's filled and whole widths each time the state
#: badge is set to a finished state (a microtask after the change, before anything repaints)
WATCH_BAR = """
window.__bars = [];
document.addEventListener("DOMContentLoaded", () => {
  const badge = document.querySelector("#state");
  if (!badge) return;
  const width = (sel) => document.querySelector(sel).getBoundingClientRect().width;
  const look = () => {
    if (!FINISHED.includes(badge.textContent)) return;
    const filled = width("#progress .ok") + width("#progress .bad");
    window.__bars.push({ state: badge.textContent, filled, whole: width("#progress") });
  };
  look();
  new MutationObserver(look).observe(badge, { childList: true, characterData: true, subtree: true });
});
""".replace("FINISHED", json.dumps(list(FINISHED)))


def seconds(shown: str) -> int:
    """The page's elapsed text ("7 s", "2 min 5 s", "1 h 3 min") in seconds."""
    units = {"h": 3600, "min": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+) (h|min|s)\b", shown))


def assert_bar_was_full_when_finished(page: Any) -> None:
    bars = page.evaluate("window.__bars")
    assert bars, "the state badge never showed a finished state"
    for bar in bars:
        assert abs(bar["filled"] - bar["whole"]) <= 1, bar  # green and red fill it the moment it ends


def cells(page: Any, column: int) -> list[str]:
    return page.eval_on_selector_all(f"#results tr td:nth-child({column})", "tds => tds.map((td) => td.textContent)")


def test_a_job_without_images_shows_its_results_as_a_table(
    serve: Callable[..., LiveServer], page: Any, tmp_path: Path
) -> None:
    project, data = tmp_path / "tally", tmp_path / "data"
    project.mkdir()
    (project / "pipeline.py").write_text(TALLY)
    data.mkdir()
    for i in range(ROWS):
        (data / f"row-{i:02d}.txt").write_text(f"w{i:02d}-" + "z" * (i % 12) + "\n")  # 4 to 15 letters
    server = serve(projects=[project])
    page.add_init_script(WATCH_BAR)
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "tally", "inputs": [str(data)]}).json()["id"]
        page.goto(f"{server.url}/jobs/{job_id}")
        page.wait_for_selector("body[data-finished='1']", timeout=120_000)
        assert page.text_content("#state") == "succeeded"
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        shown = http.get(
            f"/api/v1/jobs/{job_id}/items", params={"status": "succeeded", "size": 50, "results": "true"}
        ).json()["items"]
    assert_bar_was_full_when_finished(page)

    page.wait_for_function("document.querySelectorAll('#results tr').length === 50")
    page.wait_for_function("document.querySelector('#results-info').textContent === 'rows 1–50 of 55'")
    header = page.eval_on_selector_all("#results-head th", "ths => ths.map((th) => th.textContent)")
    assert header == ["item", "text", "length", "shape.vowels", "shape.upper", "echo"]
    rows = page.eval_on_selector_all(
        "#results tr", "trs => trs.map((tr) => [...tr.cells].map((td) => [td.textContent, td.title]))"
    )
    for row, item in zip(rows, shown, strict=True):
        result = item["result"]
        expected = [item["id"], result["text"], str(result["length"])]
        expected += [str(result["shape"]["vowels"]), result["shape"]["upper"]]
        assert [text for text, _ in row[:5]] == expected
        echo, full = row[5]
        if len(result["echo"]) > 80:  # a long value is cut short, and whole in its tooltip
            assert (echo, full) == (result["echo"][:79] + "…", result["echo"])
        else:
            assert echo == result["echo"]

    assert "Only the page shown is sorted" in page.get_attribute("#results-head th >> nth=2", "title")
    page.click("#results-head th >> text=length")
    lengths = [int(n) for n in cells(page, 3)]
    assert lengths == sorted(lengths) != [int(row[2][0]) for row in rows]  # by number, not as text
    assert page.get_attribute("#results-head th >> nth=2", "aria-sort") == "ascending"
    page.click("#results-head th >> text=length")
    assert [int(n) for n in cells(page, 3)] == sorted(lengths, reverse=True)
    page.click("#results-head th >> text=item")
    assert cells(page, 1) == sorted(item["id"] for item in shown)

    page.click("#results-next")
    page.wait_for_function("document.querySelector('#results-info').textContent === 'rows 51–55 of 55'")
    assert page.locator("#results tr").count() == 5
    assert page.is_disabled("#results-next")
    page.click("#results-prev")
    page.wait_for_function("document.querySelectorAll('#results tr').length === 50")

    assert page.locator("#previews-section").is_hidden()  # no pictures: no Previews card, no "none yet"
    took = page.text_content("#c-took")
    assert seconds(took) <= job["finished_at"] - job["started_at"] + 1  # its run's time, rounded
    page.wait_for_timeout(1500)
    assert page.text_content("#c-took") == took  # final: it does not tick on

    page.reload()  # the badge comes with the page: so does the bar, before any script asks for counts
    assert page.text_content("#state") == "succeeded"
    assert_bar_was_full_when_finished(page)
    assert page.locator("#previews-section").is_hidden()


def test_a_retried_job_shows_its_run_time_full_size_charts_and_can_be_deleted(
    serve: Callable[..., LiveServer], page: Any, tmp_path: Path
) -> None:
    project, data = picky_job(tmp_path, ["a", "bad"])
    server = serve(projects=[project])
    page.add_init_script(WATCH_BAR)
    with server.client() as http:
        job_id = http.post(
            "/api/v1/jobs", json={"pipeline": "picky", "inputs": [str(data)], "options": {"retries": 0}}
        ).json()["id"]
        page.goto(f"{server.url}/jobs/{job_id}")
        page.wait_for_selector("body[data-finished='1']", timeout=120_000)
        assert page.text_content("#state") in FINISHED
        assert_bar_was_full_when_finished(page)
        page.wait_for_timeout(2000)  # the retry comes a while after the job was created

        (data / "row-1.txt").write_text("b\n")
        with page.expect_navigation():
            page.click("#retry")
        page.wait_for_selector("body[data-finished='1']", timeout=120_000)
        page.wait_for_function("document.querySelector('#state').textContent === 'succeeded'")
        assert_bar_was_full_when_finished(page)
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        took = seconds(page.text_content("#c-took"))
        assert took <= job["finished_at"] - job["started_at"] + 1  # the retry's run
        assert job["finished_at"] - job["created_at"] > took + 1  # not the job's age

        page.wait_for_function("document.querySelector('#chart-runtime').naturalWidth > 0")
        png = http.get(f"/api/v1/jobs/{job_id}/report/runtime.png").content
        width = struct.unpack(">I", png[16:20])[0]  # the PNG's IHDR
        page.click("#chart-runtime")
        page.wait_for_selector("#lightbox[open]")
        page.wait_for_function("document.querySelector('#lightbox-img').complete")
        assert page.evaluate("document.querySelector('#lightbox-img').naturalWidth") == width
        assert page.evaluate("document.querySelector('#lightbox-img').getBoundingClientRect().width") == width
        page.keyboard.press("Escape")
        page.wait_for_selector("#lightbox:not([open])", state="attached")

        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("#delete")
        assert http.get(f"/api/v1/jobs/{job_id}").status_code == 200  # not confirmed: kept
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.click("#delete")
        assert http.get(f"/api/v1/jobs/{job_id}").status_code == 404
    page.wait_for_function("!document.querySelector('#jobs').textContent.includes('loading')")
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    assert "No jobs yet" in page.text_content("#jobs")


#: one item of STEPS steps that says how far it has got after each
STEPPING = """
import time
import shoal

pipeline = shoal.Pipeline("stepping")

@pipeline.stage()
def step(item):
    for done in range(1, 41):
        time.sleep(0.1)
        item.progress(done, 40)
    return {"steps": 40}
"""


def test_a_running_items_progress_is_shown_live_and_goes_when_the_job_ends(
    serve: Callable[..., LiveServer], page: Any, tmp_path: Path
) -> None:
    project, data = tmp_path / "stepping", tmp_path / "data"
    project.mkdir()
    (project / "pipeline.py").write_text(STEPPING)
    data.mkdir()
    (data / "long.txt").write_text("x\n")
    server = serve(projects=[project])
    with server.client() as http:
        job_id = http.post("/api/v1/jobs", json={"pipeline": "stepping", "inputs": [str(data)]}).json()["id"]
        page.goto(f"{server.url}/jobs/{job_id}")
        page.wait_for_selector("#running-section:not([hidden])", timeout=60_000)
        row = page.locator("#running tr")
        counts = []
        while len(counts) < 3 and page.locator("#running-section:not([hidden])").count():
            shown = row.locator("td.said .count").text_content(timeout=5_000) or ""
            if re.fullmatch(r"\d+ / 40", shown) and (not counts or shown != counts[-1]):
                counts.append(shown)
            page.wait_for_timeout(150)
        assert len(counts) == 3, counts  # the count moved while the page was watched
        done = [int(c.split(" / ")[0]) for c in counts]
        assert done == sorted(done)
        [item] = http.get(f"/api/v1/jobs/{job_id}/items").json()["items"]
        assert row.locator("td a").first.text_content() == item["id"]
        assert row.locator("td:nth-child(2)").text_content() == "step"
        width = page.evaluate("parseFloat(document.querySelector('#running .progress .ok').style.width)")
        assert 0 < width <= 100
        page.wait_for_selector("body[data-finished='1']", timeout=60_000)
    assert page.locator("#running-section").is_hidden()  # a finished job runs nothing
