"""`shoal metrics export` against a real Prometheus holding 24 hours of data (backfilled with
`promtool tsdb create-blocks-from openmetrics`, so the test need not wait a day), then
`shoal metrics summarize` over the export joined with a feed log and a run's results."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import shoal_cli
from tests.prometheus import Prometheus, require

pytestmark = pytest.mark.integration

STEP = 5  #: seconds
DAY = 86_400
POINTS = DAY // STEP + 1  #: both ends included


def load(t: float) -> float:
    """The synthetic machine load at time t: an hourly wave between 0.1 and 0.9."""
    return 0.5 + 0.4 * math.sin(2 * math.pi * t / 3600)


@dataclass
class Backfilled:
    prometheus: Prometheus
    start: int  #: epoch seconds, on the step grid
    end: int
    expected: dict[tuple[str, str], list[float]]  #: (metric, labels JSON) -> values on the grid


def series(start: int) -> dict[tuple[str, str], list[float]]:
    idle, user, process, values = 0.0, 0.0, 0.0, {}
    idle_v, user_v, process_v, pending_v = [], [], [], []
    for k in range(POINTS):
        t = start + k * STEP
        idle += STEP * (1 - load(t))
        user += STEP * load(t)
        process += STEP * load(t) * 0.5
        idle_v.append(round(idle, 3))
        user_v.append(round(user, 3))
        process_v.append(round(process, 3))
        pending_v.append(float(k % 100))
    values[("node_cpu_seconds_total", '{"cpu":"0","instance":"node-1","mode":"idle"}')] = idle_v
    values[("node_cpu_seconds_total", '{"cpu":"0","instance":"node-1","mode":"user"}')] = user_v
    values[("process_cpu_seconds_total", '{"instance":"head"}')] = process_v
    values[("shoal_items_pending", '{"pipeline":"stream"}')] = pending_v
    return values


def openmetrics(start: int, values: dict[tuple[str, str], list[float]]) -> str:
    lines, typed = [], set()
    for (metric, labels), points in values.items():
        family = metric.removesuffix("_total")
        if family not in typed:
            typed.add(family)
            lines.append(f"# TYPE {family} {'counter' if metric.endswith('_total') else 'gauge'}")
        text = ",".join(f'{k}="{v}"' for k, v in json.loads(labels).items())
        lines += [f"{metric}{{{text}}} {v!r} {start + k * STEP}" for k, v in enumerate(points)]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    import subprocess

    root = tmp_path_factory.mktemp("backfill")
    end = (int(dt.datetime.now(dt.UTC).timestamp()) // 3600 - 1) * 3600  # an hour ago, on the hour
    start = end - DAY
    values = series(start)
    (root / "data.om").write_text(openmetrics(start, values))
    storage = root / "data"
    created = subprocess.run(
        [require("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(root / "data.om"), str(storage)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert created.returncode == 0, created.stderr
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    prometheus = Prometheus(root / "prometheus.yml", storage).start()
    try:
        yield Backfilled(prometheus, start, end, values)
    finally:
        prometheus.stop()


def in_zone(epoch: int, hours: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone(dt.timedelta(hours=hours))).isoformat()


def test_a_day_at_five_seconds_comes_back_whole_and_in_utc(backfilled: Backfilled, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = shoal_cli(
        *("metrics", "export", "--prometheus", backfilled.prometheus.url),
        *("--start", in_zone(backfilled.start, 2), "--end", in_zone(backfilled.end, -5), "--step", "5s"),
        *("--out", str(out)),
        timeout=170,
    )
    assert result.returncode == 0, result.stderr
    total = POINTS * len(backfilled.expected)
    assert f"{total} points of {len(backfilled.expected)} series (3 metrics)" in result.stdout

    with (out / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == total
    got: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for row in rows:
        got.setdefault((row["metric"], row["labels"]), []).append((row["timestamp"], float(row["value"])))
    grid = [_utc(backfilled.start + k * STEP) for k in range(POINTS)]
    assert set(got) == set(backfilled.expected)
    for key, values in backfilled.expected.items():
        assert [t for t, _ in got[key]] == grid, key  # every step once, UTC, in order across segments
        assert [v for _, v in got[key]] == values, key

    table = pq.read_table(out / "metrics.parquet")
    assert table.num_rows == total
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert Counter(table.column("metric").to_pylist())["node_cpu_seconds_total"] == 2 * POINTS
    assert (out / "missing.csv").read_text().strip() == "metric,start,end,reason"
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["start"] == _utc(backfilled.start)
    assert manifest["missing"] == []


def test_match_selects_metrics_by_name(backfilled: Backfilled, tmp_path: Path) -> None:
    result = shoal_cli(
        *("metrics", "export", "--prometheus", backfilled.prometheus.url, "--match", "node_.*"),
        *("--start", in_zone(backfilled.end - 600, 0), "--end", in_zone(backfilled.end, 0), "--step", "1m"),
        *("--out", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert "22 points of 2 series (1 metrics)" in result.stdout


def test_summarize_joins_feed_latency_and_cpu(backfilled: Backfilled, tmp_path: Path) -> None:
    """An hour in which the input rate, the latency and the CPU all follow the same wave."""
    export = tmp_path / "export"
    first = backfilled.end - 3600
    assert (
        shoal_cli(
            *("metrics", "export", "--prometheus", backfilled.prometheus.url, "--step", "5s"),
            *("--start", in_zone(first, 0), "--end", in_zone(backfilled.end, 0), "--out", str(export)),
        ).returncode
        == 0
    )
    feed, run = tmp_path / "feed.csv", tmp_path / "run"
    run.mkdir()
    with feed.open("w", newline="") as handle, (run / "results.jsonl").open("w") as results:
        writer = csv.writer(handle)
        writer.writerow(["time", "bytes", "item_id"])
        t, n = float(first), 0
        while t < backfilled.end:
            n += 1
            writer.writerow([_utc(t), 200_000, f"frame-{n}"])
            latency = 0.05 + load(t)
            finished = _utc(t + latency)
            results.write(json.dumps({"id": f"frame-{n}", "started": _utc(t + 0.01), "finished": finished}) + "\n")
            t += 1 / (2 + 8 * load(t))  # 2 to 10 frames a second, following the wave
    result = shoal_cli(
        *("metrics", "summarize", "--feed", str(feed), "--run", str(run), "--metrics", str(export)),
        *("--interval", "1m", "--out", str(tmp_path / "summary")),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "summary" / "correlations.json").read_text())
    assert report["columns"] == ["input_mb_per_s", "e2e_p95_s", "cpu_busy_ratio"]
    assert report["intervals"] >= 55
    assert report["pearson"]["input_mb_per_s"]["cpu_busy_ratio"] > 0.9
    assert report["pearson"]["input_mb_per_s"]["e2e_p95_s"] > 0.9
    with (tmp_path / "summary" / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["start"] == _utc(first)
    assert 0.1 <= float(rows[5]["cpu_busy_ratio"]) <= 0.9
    assert (tmp_path / "summary" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
