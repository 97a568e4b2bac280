"""runtime.png (a Gantt chart of items per worker) and throughput.png (items finished per second).

Drawn with matplotlib's object API (no pyplot state), so reports can be built from any thread.
"""

from __future__ import annotations

from collections import defaultdict
from typing import IO, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from shoal.report.stats import JobData

COLOURS = {"succeeded": "#2e9d4a", "retried attempt": "#f0a030", "failed": "#d33b3b"}
MAX_BARS_PER_ROW = 3000  #: beyond this, neighbouring bars closer than a pixel are merged
Bar = tuple[float, float, str]  #: start (seconds since the job started), width, outcome


def runtime_chart(data: JobData, target: IO[Any]) -> None:
    """A row per worker, a bar per item attempt coloured by outcome; items a worker ran together
    (a batch) share its row in lanes, so a failed item never hides its batch's successes."""
    t0 = _origin(data)
    bars: dict[str, list[Bar]] = defaultdict(list)
    for r in data.items:
        if r["worker"] and r["finished_at"]:
            outcome = "succeeded" if r["status"] == "succeeded" else "failed"
            bars[r["worker"]].append((r["started_at"] - t0, r["finished_at"] - r["started_at"], outcome))
    for e in data.events:
        if e["kind"] == "retry" and e["worker"] and e["started_at"] and e["finished_at"]:
            bars[e["worker"]].append((e["started_at"] - t0, e["finished_at"] - e["started_at"], "retried attempt"))
    workers = sorted(bars, key=lambda w: min(start for start, _, _ in bars[w]))
    span = max((start + width for row in bars.values() for start, width, _ in row), default=1.0)
    figure = Figure(figsize=(11, max(3.0, 0.4 * len(workers) + 1.6)), layout="constrained")
    ax = figure.add_subplot()
    for row, worker in enumerate(workers):
        rows = lanes(bars[worker], span / 2000)
        height = 0.8 / len(rows)
        for number, lane in enumerate(rows):
            for outcome, colour in COLOURS.items():
                merged = _merge([(start, width) for start, width, kind in lane if kind == outcome], span / 2000)
                outline = len(merged) <= 400 and len(rows) <= 8  # outlines while bars can be told apart
                ax.broken_barh(
                    merged,
                    (row - 0.4 + number * height, height),
                    facecolor=colour,
                    edgecolor="white",
                    linewidth=0.4 if outline else 0,
                )
    for start, _ in data.run_spans()[1:]:
        ax.axvline(start - t0, color="#555555", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(workers)), workers, fontsize=8)
    ax.set_ylim(-0.6, max(len(workers), 1) - 0.4)
    ax.set_xlim(0, span * 1.02)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the job started")
    processes = "1 worker process" if len(workers) == 1 else f"{len(workers)} worker processes"
    ax.set_title(f"{data.job.id}: {len(data.items)} items on {processes}")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="upper right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    figure.savefig(target, format="png", dpi=110)


def throughput_chart(data: JobData, target: IO[Any]) -> None:
    t0 = _origin(data)
    finished = np.sort(np.array([r["finished_at"] - t0 for r in data.items if r["finished_at"]]))
    figure = Figure(figsize=(11, 4), layout="constrained")
    ax = figure.add_subplot()
    if finished.size:
        end = float(finished[-1])
        width = max(1.0, end / 200)
        edges = np.arange(0.0, end + width, width)
        counts, _ = np.histogram(finished, bins=edges)
        ax.stairs(counts / width, edges, fill=True, color="#3a78c2", alpha=0.8, label="items/s")
        total = ax.twinx()
        total.plot(finished, np.arange(1, finished.size + 1), color="#222222", linewidth=1, label="items finished")
        total.set_ylabel("items finished (total)")
        total.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the job started")
    ax.set_ylabel("items finished per second")
    ax.set_title(f"{data.job.id}: throughput")
    ax.grid(alpha=0.3)
    figure.savefig(target, format="png", dpi=110)


def lanes(bars: list[Bar], tolerance: float) -> list[list[Bar]]:
    """Bars split into as few lanes as keep each lane free of overlaps (earliest free lane
    first); overlaps shorter than ``tolerance`` do not count."""
    found: list[list[Bar]] = []
    ends: list[float] = []
    for bar in sorted(bars):
        start, width, _ = bar
        lane = next((i for i, end in enumerate(ends) if end <= start + tolerance), None)
        if lane is None:
            found.append([])
            ends.append(0.0)
            lane = len(found) - 1
        found[lane].append(bar)
        ends[lane] = start + width
    return found or [[]]


def _origin(data: JobData) -> float:
    if data.runs:
        return float(data.runs[0]["started_at"])
    return min((r["started_at"] for r in data.items), default=0.0)


def _merge(spans: list[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    """Join bars separated by less than ``gap`` when a row holds too many to draw one by one."""
    spans = sorted(spans)
    if len(spans) <= MAX_BARS_PER_ROW:
        return spans
    merged = [spans[0]]
    for start, width in spans[1:]:
        last_start, last_width = merged[-1]
        if start - (last_start + last_width) < gap:
            merged[-1] = (last_start, max(last_width, start + width - last_start))
        else:
            merged.append((start, width))
    return merged
