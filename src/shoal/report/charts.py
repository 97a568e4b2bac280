"""runtime.png (a Gantt chart of items per worker) and throughput.png (items finished per second).

Drawn from a Timeline with matplotlib's object API (no pyplot state), so reports can be built
from any thread.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from shoal.report.timeline import BINS, Bar, Timeline

COLOURS = {"succeeded": "#2e9d4a", "retried attempt": "#f0a030", "failed": "#d33b3b"}
MAX_BARS_PER_ROW = 3000  #: beyond this, neighbouring bars closer than a pixel are merged
THROUGHPUT_BARS = 200  #: bars of the throughput chart at most


def runtime_chart(timeline: Timeline, target: IO[Any]) -> None:
    """A row per worker. A small job: a bar per item attempt coloured by outcome; items a worker ran
    together (a batch) share its row in lanes, so a failed item never hides its batch's successes.
    A large one: how busy each worker was in each slice of time, in the outcome's colour."""
    rows = timeline.bars if timeline.exact else timeline.busy
    workers = sorted(rows, key=lambda w: _first(timeline, w))
    figure = Figure(figsize=(11, max(3.0, 0.4 * len(workers) + 1.6)), layout="constrained")
    ax = figure.add_subplot()
    span = timeline.span
    for row, worker in enumerate(workers):
        if timeline.exact:
            _bars(ax, row, timeline.bars[worker], span)
        else:
            _busy(ax, row, timeline.busy[worker], timeline.width)
    for start in timeline.run_starts[1:]:  # where a resumed job picked up again
        ax.axvline(start - timeline.t0, color="#555555", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(workers)), workers, fontsize=8)
    ax.set_ylim(-0.6, max(len(workers), 1) - 0.4)
    ax.set_xlim(0, span * 1.02)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the job started")
    processes = "1 worker process" if len(workers) == 1 else f"{len(workers)} worker processes"
    title = f"{timeline.job_id}: {timeline.items:,} items on {processes}"
    if not timeline.exact:
        title += f"\nbinned: each row shows the share of each {timeline.width:.3g} s slice its worker was busy"
    ax.set_title(title)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="upper right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    figure.savefig(target, format="png", dpi=110)


def throughput_chart(timeline: Timeline, target: IO[Any]) -> None:
    """Items finished per second (bars of at least a second, a few hundred at most), and the total."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    ax = figure.add_subplot()
    counts = timeline.finished_per_bin()
    if timeline.items:
        step = max(int(np.ceil(len(counts) / THROUGHPUT_BARS)), int(np.ceil(1.0 / timeline.width)))
        starts = np.arange(0, len(counts), step)
        edges = np.append(starts, len(counts)) * timeline.width
        ax.stairs(np.add.reduceat(counts, starts) / np.diff(edges), edges, fill=True, color="#3a78c2", alpha=0.8)
        total = ax.twinx()
        total.plot((np.arange(len(counts)) + 1) * timeline.width, np.cumsum(counts), color="#222222", linewidth=1)
        total.set_ylabel("items finished (total)")
        total.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the job started")
    ax.set_ylabel("items finished per second")
    ax.set_title(f"{timeline.job_id}: throughput")
    ax.grid(alpha=0.3)
    figure.savefig(target, format="png", dpi=110)


def _first(timeline: Timeline, worker: str) -> float:
    if timeline.exact:
        return min(start for start, _, _ in timeline.bars[worker])
    return float(np.argmax(timeline.busy[worker].sum(axis=0) > 0))


def _bars(ax: Any, row: int, bars: list[Bar], span: float) -> None:
    rows = lanes(bars, span / 2000)
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


def _busy(ax: Any, row: int, busy: np.ndarray[Any, Any], width: float) -> None:
    """One worker's busy share per bin: succeeded from the bottom of its row, failed above it."""
    share = np.clip(busy / width, 0.0, 1.0)
    edges = np.arange(BINS + 1) * width
    bottom = row + 0.4
    ok = share[0] * 0.8
    bad = np.minimum(share[1] * 0.8, 0.8 - ok)
    ax.stairs(bottom - ok, edges, baseline=bottom, fill=True, color=COLOURS["succeeded"], linewidth=0)
    ax.stairs(bottom - ok - bad, edges, baseline=bottom - ok, fill=True, color=COLOURS["failed"], linewidth=0)


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
