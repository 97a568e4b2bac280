"""runtime.png (a Gantt chart of items per worker) and throughput.png (items finished per second).

Drawn from a Timeline with matplotlib's object API (no pyplot state), so reports can be built
from any thread. Both share one time axis on which a long stretch with no work (between the runs
of a resumed job, say) is cut down to a short hatched break that says how long it was, so the axis
shows work, not waiting.
"""

from __future__ import annotations

import itertools
from typing import IO, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from shoal.report.timeline import BINS, Bar, Timeline

COLOURS = {"succeeded": "#2e9d4a", "retried attempt": "#f0a030", "failed": "#d33b3b"}
MAX_BARS_PER_ROW = 3000  #: beyond this, neighbouring bars closer than a pixel are merged
THROUGHPUT_BARS = 200  #: bars of the throughput chart at most
PER_BIN = 20  #: items a throughput bar holds on average, where the job is long enough for MIN_BINS of them
MIN_BINS = 20  #: throughput bars at least (fewer items to a bar then)
SMOOTH = 5  #: throughput bars the smoothed rate averages over
#: seconds: the round widths a throughput bar or tick step may have (beyond them, whole days)
NICE = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MIN_GAP_S = 10.0  #: seconds: an idle stretch shorter than this is drawn as it passed,
GAP_ITEMS = 20  #: as is one shorter than this many items (of the mean time an item ran),
GAP_SHARE = 0.05  #: or than this share of the time drawn
BREAK_SHARE = 0.03  #: the width of a cut idle stretch, as a share of the time drawn
TICK_ROOM = 0.08  #: the least room between two ticks of a cut axis, as a share of its width
UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))  #: seconds in each


def runtime_chart(timeline: Timeline, target: IO[Any]) -> None:
    draw_runtime(timeline).savefig(target, format="png", dpi=110)


def throughput_chart(timeline: Timeline, target: IO[Any]) -> None:
    draw_throughput(timeline).savefig(target, format="png", dpi=110)


def draw_runtime(timeline: Timeline) -> Figure:
    """A row per worker. A small job: a bar per item attempt coloured by outcome; items a worker ran
    together (a batch) share its row in lanes, so a failed item never hides its batch's successes.
    A large one: how busy each worker was in each slice of time, in the outcome's colour."""
    rows = timeline.bars if timeline.exact else timeline.busy
    workers = sorted(rows, key=lambda w: _first(timeline, w))
    figure = Figure(figsize=(11, max(3.0, 0.4 * len(workers) + 1.9)), layout="constrained")
    ax = figure.add_subplot()
    axis = _Axis(timeline)
    for row, worker in enumerate(workers):
        if timeline.exact:
            _bars(ax, row, timeline.bars[worker], float(axis(timeline.span)), axis)  # a pixel of the axis drawn
        else:
            _busy(ax, row, timeline.busy[worker], timeline.width, axis)
    for start in timeline.run_starts[1:]:  # where a resumed job picked up again
        ax.axvline(axis.after_cut(start - timeline.t0), color="#555555", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(workers)), workers, fontsize=8)
    ax.set_ylim(-0.6, max(len(workers), 1) - 0.4)
    ax.invert_yaxis()
    axis.show(ax)
    title = f"{timeline.job_id}: {timeline.items:,} items on {_who(timeline)}"
    if not timeline.exact:
        title += f"\nbinned: each row shows the share of each {timeline.width:.3g} s slice its worker was busy"
    ax.set_title(title)
    handles = [Patch(color=c, label=k) for k, c in COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return figure


def draw_throughput(timeline: Timeline) -> Figure:
    """Items finished per second in bars wide enough to hold a score of items each (so a slow job's
    batches finishing do not read as spikes), a rolling mean over a few bars, and the total."""
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    ax = figure.add_subplot()
    axis = _Axis(timeline)
    width = bin_width(timeline.items, axis.shown, timeline.width)
    if timeline.items:
        done = np.concatenate([[0], np.cumsum(timeline.finished_per_bin())])  #: items finished by each bin edge
        fine = np.arange(len(done)) * timeline.width
        for a, b in axis.stretches:
            edges = _edges(a, b, width)
            reached = np.interp(edges, fine, done)  # spread evenly over each bin of the timeline
            reached[-1] = done[-1] if b == timeline.span else reached[-1]  # the last bin ends with the last item
            counts, seconds = np.diff(reached), np.diff(edges)
            x = axis(edges)
            ax.stairs(counts / seconds, x, fill=True, color="#3a78c2", alpha=0.45, label="items/s in each bar")
            ax.plot((x[:-1] + x[1:]) / 2, _smooth(counts, seconds), color="#1d4f91", linewidth=2, label="rolling mean")
        total = ax.twinx()
        total.plot(
            axis(np.minimum(fine, timeline.span)), done, color="#222222", linewidth=1, label="items finished (total)"
        )
        total.set_ylabel("items finished (total)")
        total.set_ylim(bottom=0)
        handles = [*ax.get_legend_handles_labels()[0][:2], *total.get_legend_handles_labels()[0]]
        figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    axis.show(ax)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"items finished per second\n(bars of {_duration(width)})")
    ax.set_title(f"{timeline.job_id}: throughput")
    ax.grid(alpha=0.3)
    return figure


def bin_width(items: int, seconds: float, finest: float) -> float:
    """Seconds a throughput bar spans: room for PER_BIN items on average where the job ran long enough
    for MIN_BINS such bars (fewer items to a bar otherwise), at least a second and a bin of the
    timeline, THROUGHPUT_BARS bars at most; a round number of seconds or minutes."""
    wanted = min(PER_BIN * seconds / max(items, 1), seconds / MIN_BINS)
    return _nice(max(wanted, 1.0, finest, seconds / THROUGHPUT_BARS))


def _first(timeline: Timeline, worker: str) -> float:
    if timeline.exact:
        return min(start for start, _, _ in timeline.bars[worker])
    return float(np.argmax(timeline.busy[worker].sum(axis=0) > 0))


def _bars(ax: Any, row: int, bars: list[Bar], span: float, axis: _Axis) -> None:
    rows = lanes(bars, span / 2000)
    height = 0.8 / len(rows)
    for number, lane in enumerate(rows):
        for outcome, colour in COLOURS.items():
            merged = _merge([(start, width) for start, width, kind in lane if kind == outcome], span / 2000)
            if not merged:
                continue  # an empty collection still costs its share of the drawing
            outline = len(merged) <= 400 and len(rows) <= 8  # outlines while bars can be told apart
            ax.broken_barh(
                [(axis(start), axis(start + width) - axis(start)) for start, width in merged],
                (row - 0.4 + number * height, height),
                facecolor=colour,
                edgecolor="white",
                linewidth=0.4 if outline else 0,
            )


def _busy(ax: Any, row: int, busy: np.ndarray[Any, Any], width: float, axis: _Axis) -> None:
    """One worker's busy share per bin: succeeded from the bottom of its row, failed above it."""
    share = np.clip(busy / width, 0.0, 1.0)
    edges = axis(np.arange(BINS + 1) * width)
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


class _Axis:
    """Seconds since the job started as drawn: each long idle stretch cut down to a short break."""

    def __init__(self, timeline: Timeline) -> None:
        self.span = timeline.span
        self.cuts = _cuts(timeline)  #: (start, end) of each idle stretch cut, seconds since the start
        self.shown = self.span - sum(b - a for a, b in self.cuts)  #: seconds drawn as they passed
        ends = [0.0, *(t for cut in self.cuts for t in cut), self.span]
        self.stretches = [(a, b) for a, b in zip(ends[::2], ends[1::2], strict=True) if b > a]  #: what is drawn
        real, drawn = [0.0], [0.0]
        for a, b in self.cuts:
            x = drawn[-1] + a - real[-1]
            real += [a, b]
            drawn += [x, x + BREAK_SHARE * self.shown]
        beyond = real[-1] + 2 * self.span + 1.0  # past the last cut, time is drawn as it passed
        self.real, self.drawn = np.array([*real, beyond]), np.array([*drawn, drawn[-1] + beyond - real[-1]])

    def __call__(self, seconds: Any) -> Any:
        return np.interp(seconds, self.real, self.drawn)

    def after_cut(self, seconds: float) -> float:
        """Where a moment is drawn; one inside a cut at its end, where work resumes."""
        return float(self(next((b for a, b in self.cuts if a < seconds < b), seconds)))

    def show(self, ax: Any) -> None:
        """The limits, and for each cut a hatched break that says how long it was, with ticks at round
        times since the start in each stretch drawn."""
        ax.set_xlim(0, float(self(self.span)) * 1.02)
        if not self.cuts:
            ax.set_xlabel("seconds since the job started")
            return
        for a, b in self.cuts:
            left, right = float(self(a)), float(self(b))
            ax.axvspan(left, right, facecolor="white", edgecolor="#888888", hatch="//", linewidth=0, zorder=3)
            ax.text(
                (left + right) / 2, 0.5, f"{_duration(b - a)} gap", transform=ax.get_xaxis_transform(), zorder=4,
                rotation=90, ha="center", va="center", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none"},
            )  # fmt: skip
        ticks = []
        for a, b in self.stretches:
            step = _nice((b - a) / max(1, round(8 * (b - a) / self.shown)))
            ticks += [t for t in np.arange(np.ceil(a / step), np.floor(b / step) + 1) * step if a <= t <= b]
        kept: list[float] = []
        for t in ticks:  # none so near the last that their labels would run together
            if not kept or self(t) - self(kept[-1]) > TICK_ROOM * self(self.span):
                kept.append(t)
        ax.set_xticks(self(np.array(kept)), [_clock(t, self.span) for t in kept])
        unit = "h:mm:ss" if self.span >= 3600 else "min:s" if self.span >= 120 else "s"
        ax.set_xlabel(f"time since the job started ({unit}), idle gaps cut short")


def _cuts(timeline: Timeline) -> list[tuple[float, float]]:
    """The idle stretches worth cutting: long against an item and against the time drawn."""
    typical = timeline.busy_s / max(timeline.items, 1)
    long = [(a, b) for a, b in timeline.idle() if b - a >= max(MIN_GAP_S, GAP_ITEMS * typical)]
    shown = timeline.span - sum(b - a for a, b in long)
    return [(a, b) for a, b in long if b - a >= GAP_SHARE * shown]


def _who(timeline: Timeline) -> str:
    """ "2 workers" for a job that ran once on two processes; "2 workers (6 processes over 3 runs)" for
    one resumed twice. Workers: the most processes that worked at the same time (Timeline.at_once)."""
    workers, processes, runs = timeline.at_once(), timeline.processes, timeline.runs
    said = "1 worker" if workers == 1 else f"{workers} workers"
    many = "1 process" if processes == 1 else f"{processes} processes"
    if runs > 1:
        return f"{said} ({many} over {runs} runs)"
    return f"{said} ({many})" if processes > workers else said


def _edges(start: float, end: float, width: float) -> np.ndarray[Any, Any]:
    """Bar edges every ``width`` seconds from ``start``; the last bar takes what is left, or its
    neighbour does, where that is under half a bar."""
    edges = start + np.arange(max(1, round((end - start) / width)) + 1) * width
    edges[-1] = end
    return edges


def _smooth(counts: np.ndarray[Any, Any], seconds: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Items per second over a centred window of SMOOTH bars (fewer at the ends)."""
    window = np.ones(min(SMOOTH, len(counts) - 1 + len(counts) % 2))  # odd, and no longer than the bars
    found: np.ndarray[Any, Any] = np.convolve(counts, window, "same") / np.convolve(seconds, window, "same")
    return found


def _nice(seconds: float) -> float:
    """The smallest round width of at least ``seconds`` (a hair less, for rounding errors)."""
    wanted = seconds * (1 - 1e-9)
    return next((float(n) for n in NICE if n >= wanted), float(np.ceil(wanted / NICE[-1]) * NICE[-1]))


def _duration(seconds: float) -> str:
    """A length of time as people say it, in two units at most: 0.5 s, 45 s, 1 min 30 s, 12 min, 1 h,
    3 h 12 min, 2 d 3 h (a gap is measured in the timeline's bins, so is never exact to the second)."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    for (big, name), (small, smaller) in itertools.pairwise(UNITS):
        small = 60 if big == 60 and seconds >= 600 else small  # 12 min, not 12 min 7 s
        whole = round(seconds / small) * small
        if whole >= big:
            part = whole % big // small
            return f"{whole // big} {name}" + (f" {part} {smaller}" if part else "")
    return f"{round(seconds)} s"


def _clock(seconds: float, span: float) -> str:
    """A tick's time since the start: h:mm:ss, m:ss or seconds, as suits the job's span."""
    if span < 120:
        return f"{round(seconds, 6):g}"
    whole = round(seconds)
    if span < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
