"""The Gantt chart: what a reader sees of each item, batched or not."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.image import imread

import shoal
from shoal.report import job_timeline
from shoal.report.charts import COLOURS, lanes, runtime_chart, throughput_chart
from shoal.report.timeline import EXACT
from shoal.store import Ledger
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
