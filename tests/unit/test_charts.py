"""The Gantt chart: what a reader sees of each item, batched or not."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import StepPatch

import shoal
from shoal.report import job_timeline
from shoal.report.charts import (
    COLOURS,
    NICE,
    bin_width,
    draw_runtime,
    draw_throughput,
    lanes,
    runtime_chart,
    throughput_chart,
)
from shoal.report.scan import Page
from shoal.report.timeline import EXACT, Timeline
from shoal.store import JobRecord, Ledger
from shoal.store.rows import item_head, succeeded_row, with_success
from tests.conftest import MakeProject

BATCHED = """
import time
import shoal
pipeline = shoal.Pipeline("batched")

@pipeline.stage(batch_size=8)
def work(items):
    time.sleep(0.3)
    return [shoal.ItemError("bad on purpose", retry=False) if i.input.endswith("7.txt") else {} for i in items]
"""


def test_items_run_together_get_a_lane_each_and_items_in_turn_share_one() -> None:
    batch = [(1.0, 0.5, "succeeded"), (1.0, 0.5, "failed"), (1.0, 0.49, "succeeded")]
    in_turn = [(2.0, 0.2, "succeeded"), (2.2, 0.2, "succeeded"), (2.3999, 0.1, "failed")]  # jitter under tolerance
    found = lanes(batch + in_turn, tolerance=0.001)
    assert len(found) == 3  # the batch of three side by side; the items in turn after it, in the first lane
    assert sorted(bar for lane in found for bar in lane) == sorted(batch + in_turn)
    assert found[0][1:] == in_turn
    for lane in found:
        assert all(a[0] + a[1] <= b[0] + 0.001 for a, b in itertools.pairwise(lane))
    assert lanes([], 0.001) == [[]]


def test_a_failed_item_does_not_hide_the_successes_of_its_batch(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    result = shoal.run(make_project(BATCHED), [str(inputs(8))], workers=1, report=False)
    assert result.counts["failed"] == 1
    ledger = Ledger(result.db)
    png = io.BytesIO()
    runtime_chart(job_timeline(ledger, result.job_id), png)
    ledger.close()
    pixels = imread(io.BytesIO(png.getvalue()))[..., :3]

    def area(colour: str) -> int:
        rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
        return int((np.abs(pixels - rgb).max(axis=-1) < 0.02).sum())

    green, red = area(COLOURS["succeeded"]), area(COLOURS["failed"])
    assert red > 0
    assert green > 5 * red  # seven of the eight items succeeded, and they show


def _area(png: bytes, colour: str) -> int:
    pixels = imread(io.BytesIO(png))[..., :3]
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(axis=-1) < 0.02).sum())


def test_a_large_job_is_drawn_binned_and_says_so(tmp_path: Path) -> None:
    """Too many items for a bar each: each worker's row shows how busy it was, slice by slice."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    fields = {"id": "big", "pipeline": "p", "fingerprint": "f", "project": "/p", "inputs": "[]", "options": "{}"}
    fields |= {"out": "/out", "state": "succeeded", "created_at": 0.0, "updated_at": 0.0, "finished_at": None}
    fields |= {"entries": 0, "ingested": True, "owner": None, "heartbeat_at": None}
    job, _ = ledger.open_job("key", lambda: fields)
    number = ledger.start_run(job.id, "local", 2, "host:1")
    start = ledger.runs(job.id)[0]["started_at"]
    items = EXACT + 5000
    rows = []
    for n in range(items):  # two workers, each item 0.01 s, back to back
        began = start + (n // 2) * 0.01
        done = succeeded_row(job.num, f"i{n}", 1, f"w:{n % 2}", began, began + 0.01, '{"s":0.01}', "{}")
        rows.append(with_success(item_head(job.num, f"i{n}", n, f"in/{n}", f"in/{n}", None), done))
    ledger.record(job.id, new=rows)
    ledger.end_run(job.id, number, "finished", 0.1)
    found = job_timeline(ledger, job.id)
    ledger.close()
    assert not found.exact
    assert found.items == items
    assert set(found.busy) == {"w:0", "w:1"}
    assert abs(found.busy["w:0"].sum() - items / 2 * 0.01) < 1e-3  # every busy second is in some bin
    assert found.busy["w:0"][0].max() < found.width * 1.01  # and no bin holds more than it spans
    gantt, throughput = io.BytesIO(), io.BytesIO()
    runtime_chart(found, gantt)
    throughput_chart(found, throughput)
    assert _area(gantt.getvalue(), COLOURS["succeeded"]) > 10_000
    assert sum(found.finished_per_bin()) == items
    assert len(throughput.getvalue()) > 10_000


HOUR = 3600.0
Item = tuple[str, float, float]  #: worker, started, finished (epoch seconds)


def _timeline(items: list[Item], runs: list[tuple[float, float]], *, binned: bool = False) -> Timeline:
    """A finished job's Timeline from its items, without a ledger; ``binned`` draws it as a large job."""
    job = JobRecord(
        num=1, id="job", key="k", pipeline="p", fingerprint="f", project="/p", inputs="[]", options="{}",
        out="/out", state="succeeded", created_at=runs[0][0], updated_at=runs[-1][1], finished_at=runs[-1][1],
        entries=len(items), ingested=True, owner=None, heartbeat_at=None,
        succeeded=EXACT + 1 if binned else len(items),
    )  # fmt: skip
    found = Timeline(job, [{"started_at": a, "ended_at": b} for a, b in runs])  # type: ignore[misc]
    workers, started, finished = zip(*items, strict=True)
    columns = {"worker": list(workers), "status": ["succeeded"] * len(items)}
    found.add(Page(pa.record_batch(columns | {"started_at": list(started), "finished_at": list(finished)})))
    return found


def _back_to_back(workers: list[str], start: float, seconds: float, each: float = 0.5) -> list[Item]:
    """Each worker running items of ``each`` seconds one after another for ``seconds``."""
    steps = np.arange(0, seconds, each)
    return [(w, start + t, start + t + each) for w in workers for t in steps]


def _resumed(start: float = 1000.0) -> tuple[list[Item], list[tuple[float, float]]]:
    """Two workers for a minute; an hour later, two new ones for another minute."""
    later = start + 60 + HOUR
    items = _back_to_back(["h:1", "h:2"], start + 1, 59) + _back_to_back(["h:3", "h:4"], later + 1, 59)
    return items, [(start, start + 61), (later, later + 61)]


def _overlaps(figure: Figure, artist: Any, ax: Any) -> bool:
    figure.draw_without_rendering()
    return bool(artist.get_window_extent().overlaps(ax.get_window_extent()))


def test_a_resumed_job_draws_its_work_and_marks_the_gap_between_runs() -> None:
    items, runs = _resumed()
    figure = draw_runtime(_timeline(items, runs))
    ax = figure.axes[0]
    assert ax.get_xlim()[1] < 1.25 * 122  # about two minutes of work, not an hour and two minutes
    assert ax.get_title().endswith("items on 2 workers (4 processes over 2 runs)")
    assert any(t.get_text() == "1 h gap" for t in ax.texts)
    bars = [x for c in ax.collections for path in c.get_paths() for x in path.vertices[:, 0]]
    assert max(bars) <= ax.get_xlim()[1]  # every bar is in sight
    assert "idle gaps cut short" in ax.get_xlabel()
    (legend,) = figure.legends
    assert not _overlaps(figure, legend, ax)
    png = io.BytesIO()
    runtime_chart(_timeline(items, runs), png)
    assert imread(io.BytesIO(png.getvalue())).shape[1] > 1000


def test_a_large_resumed_job_is_cut_the_same_way() -> None:
    items, runs = _resumed()
    timeline = _timeline(items, runs, binned=True)
    assert not timeline.exact
    ax = draw_runtime(timeline).axes[0]
    assert ax.get_xlim()[1] < 1.25 * 122
    assert "on 2 workers (4 processes over 2 runs)\nbinned" in ax.get_title()
    assert any(t.get_text().endswith("gap") for t in ax.texts)


def test_a_job_that_ran_once_just_says_how_many_workers() -> None:
    timeline = _timeline(_back_to_back(["h:1", "h:2"], 1001, 30), [(1000, 1031)])
    ax = draw_runtime(timeline).axes[0]
    assert ax.get_title() == f"job: {timeline.items:,} items on 2 workers"
    assert ax.get_xlabel() == "seconds since the job started"
    assert not ax.texts
    assert ax.get_xlim()[1] < 1.05 * 31
    replaced = _back_to_back(["h:1"], 1001, 10) + _back_to_back(["h:2"], 1011, 10)  # one process, then another
    assert draw_runtime(_timeline(replaced, [(1000, 1021)])).axes[0].get_title().endswith("on 1 worker (2 processes)")


def test_a_short_pause_is_drawn_as_it_passed() -> None:
    items = _back_to_back(["h:1"], 1001, 60) + _back_to_back(["h:1"], 1066, 60)  # five seconds idle
    ax = draw_runtime(_timeline(items, [(1000, 1126)])).axes[0]
    assert not ax.texts
    assert ax.get_xlim()[1] > 126


def test_a_slow_batched_job_is_not_drawn_as_spikes() -> None:
    """An item every 3 s in batches of 8: eight items finish together every 24 s, for ten minutes."""
    start = 1000.0
    items = [("h:1", start + 24 * k, start + 24 * k + 24) for k in range(25) for _ in range(8)]
    figure = draw_throughput(_timeline(items, [(start, start + 600)]))
    ax, total = figure.axes
    (bars,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    rates, edges, _ = bars.get_data()
    assert np.diff(edges)[:-1].min() > 1
    assert np.diff(edges)[0] in NICE
    assert rates.max() / np.median(rates) <= 2.5  # one-second bars would read 8 items/s, then nothing
    (smooth,) = ax.lines
    middle = smooth.get_ydata()[2:-2]
    assert middle.max() / middle.min() < 1.5
    assert abs(middle.mean() - 1 / 3) < 0.05
    assert total.lines[0].get_ydata()[-1] == len(items)
    assert f"bars of {np.diff(edges)[0]:g} s" in ax.get_ylabel()
    (legend,) = figure.legends
    assert not _overlaps(figure, legend, ax)
    png = io.BytesIO()
    throughput_chart(_timeline(items, [(start, start + 600)]), png)
    assert len(png.getvalue()) > 10_000


def test_throughput_of_a_resumed_job_skips_the_gap_and_counts_every_item() -> None:
    items, runs = _resumed()
    figure = draw_throughput(_timeline(items, runs))
    ax, total = figure.axes
    assert ax.get_xlim()[1] < 1.25 * 122
    assert any(t.get_text() == "1 h gap" for t in ax.texts)
    counts = sum(
        float((p.get_data()[0] * np.diff(p.get_data()[1])).sum()) for p in ax.patches if isinstance(p, StepPatch)
    )
    assert abs(counts - len(items)) < 1e-6
    assert total.lines[0].get_ydata()[-1] == len(items)


def test_bars_are_round_and_hold_a_score_of_items_where_there_are_enough() -> None:
    assert bin_width(200, 600, 0.3) == 30  # too few items for 20 a bar: twenty bars
    assert bin_width(100_000, 3 * HOUR, 5.4) == 60  # a bar a minute holds about 185
    assert bin_width(10_000_000, HOUR, 1.8) == 30  # two hundred bars at most
    assert bin_width(50, 2.0, 0.001) == 1  # a second at least
    for items, seconds in [(7, 9.0), (1234, 777.0), (10**7, 40 * HOUR)]:
        width = bin_width(items, seconds, seconds / 2000)
        assert width in NICE or width % 86400 == 0
        assert seconds / width <= 200


def test_a_job_with_nothing_run_yet_draws_empty_charts() -> None:
    job = JobRecord(
        num=1, id="job", key="k", pipeline="p", fingerprint="f", project="/p", inputs="[]", options="{}",
        out="/out", state="running", created_at=1000.0, updated_at=1000.0, finished_at=None,
        entries=0, ingested=False, owner=None, heartbeat_at=None,
    )  # fmt: skip
    timeline = Timeline(job, [])
    assert draw_runtime(timeline).axes[0].get_title() == "job: 0 items on 0 workers"
    png = io.BytesIO()
    throughput_chart(timeline, png)
    assert png.getvalue().startswith(b"\x89PNG")
