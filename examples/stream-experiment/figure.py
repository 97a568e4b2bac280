"""experiment.png: input rate, p95 latency and CPU over time (left), and the input rate against
p95 latency and against the job's CPU (right). Object API, no pyplot state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from shoal.feed import Profile


def plot(
    names: list[str],
    rows: np.ndarray[Any, Any],
    found: list[dict[str, Any]],
    profile: Profile,
    started: float,
    interval_s: float,
    title: str,
    path: Path,
) -> None:
    """Draw the figure; times are seconds since the feed began."""
    column = {name: rows[:, names.index(name)] for name in names}
    seconds = rows[:, 0] + interval_s / 2 - started  # the middle of each interval
    figure = Figure(figsize=(12, 7.5), layout="constrained")
    figure.suptitle(title)
    grid = figure.add_gridspec(3, 2, width_ratios=(1.6, 1))
    rate, latency, cpu = (figure.add_subplot(grid[row, 0]) for row in range(3))
    marks = [m for m, _ in profile.marks] + [2 * profile.marks[-1][0] - profile.marks[-2][0]]
    rate.step(marks, [r for _, r in profile.marks] + [profile.marks[-1][1]], where="post", label="asked", color="0.6")
    _line(rate, seconds, column, "input_mb_per_s", "sent")
    rate.set_ylabel("input MB/s")
    _line(latency, seconds, column, "e2e_p95_s", "p95")
    _line(latency, seconds, column, "e2e_p50_s", "p50")
    latency.set_ylabel("end-to-end latency (s)")
    _line(cpu, seconds, column, "job_cpu_cores", "the job (coordinator + workers)")
    _line(cpu, seconds, column, "machine_cpu_cores", "the machine (every process)")
    cpu.set_ylabel("CPU (cores)")
    cpu.set_xlabel("seconds since the feed began")
    for ax in (rate, latency, cpu):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    pairs = {(c["x"], c["y"]): c for c in found}
    _scatter(figure.add_subplot(grid[0:2, 1]), column, pairs.get(("input_mb_per_s", "e2e_p95_s")), "job_cpu_cores")
    _scatter(figure.add_subplot(grid[2, 1]), column, pairs.get(("input_mb_per_s", "job_cpu_cores")), None)
    figure.savefig(path, dpi=80)


def _line(ax: Any, seconds: Any, column: dict[str, Any], name: str, label: str) -> None:
    if name in column and np.isfinite(column[name]).any():
        ax.plot(seconds, column[name], marker=".", linewidth=1, label=label)


def _scatter(ax: Any, column: dict[str, Any], pair: dict[str, Any] | None, colour: str | None) -> None:
    if pair is None or pair["pearson"] is None:
        ax.text(0.5, 0.5, "not enough intervals\nfor a correlation", ha="center", va="center")
        ax.set_axis_off()
        return
    x, y = column[pair["x"]], column[pair["y"]]
    shade = column.get(colour) if colour else None
    if shade is not None and np.isfinite(shade).any():
        points = ax.scatter(x, y, c=shade, cmap="viridis", s=18)
        ax.figure.colorbar(points, ax=ax, label="job CPU (cores)")
    else:
        ax.scatter(x, y, s=18)
    ax.set_title(f"Pearson {pair['pearson']:+.2f}, Spearman {pair['spearman']:+.2f} ({pair['intervals']} intervals)")
    ax.set_xlabel("input MB/s")
    ax.set_ylabel("p95 latency (s)" if pair["y"] == "e2e_p95_s" else "job CPU (cores)")
    ax.grid(alpha=0.3)
