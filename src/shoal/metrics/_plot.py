"""summary.png for `shoal metrics summarize`: input, latency and resources over time, and the
input rate against p95 latency coloured by CPU. Object API, no pyplot state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

PANELS = (
    ("input", ("input_mb_per_s", "input_items_per_s", "done_items_per_s")),
    ("latency (s)", ("e2e_p95_s", "e2e_p50_s", "processing_p95_s", "processing_p50_s")),
    ("CPU", ("cpu_busy_ratio", "process_cpu_cores")),
)


def plot(names: list[str], table: np.ndarray[Any, Any], result: dict[str, Any], path: Path) -> None:
    minutes = (table[:, 0] - table[0, 0]) / 60
    figure = Figure(figsize=(12, 8), layout="constrained")
    grid = figure.add_gridspec(3, 2, width_ratios=(2, 1))
    for row, (title, wanted) in enumerate(PANELS):
        ax = figure.add_subplot(grid[row, 0])
        for name in wanted:
            if name in names and np.isfinite(table[:, names.index(name)]).any():
                ax.plot(minutes, table[:, names.index(name)], label=name, linewidth=1)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="upper left", fontsize="small")
        if row == len(PANELS) - 1:
            ax.set_xlabel("minutes since the first interval")
    _scatter(figure.add_subplot(grid[:, 1]), names, table, result)
    figure.savefig(path, dpi=100)


def _scatter(ax: Any, names: list[str], table: np.ndarray[Any, Any], result: dict[str, Any]) -> None:
    picked = result["columns"]
    if len(picked) < 2:
        ax.text(0.5, 0.5, "not enough sources\nfor a correlation", ha="center", va="center")
        ax.set_axis_off()
        return
    x, y = (table[:, names.index(c)] for c in picked[:2])
    colour = table[:, names.index(picked[2])] if len(picked) > 2 else None
    points = ax.scatter(x, y, c=colour, cmap="viridis", s=14)
    if colour is not None:
        ax.figure.colorbar(points, ax=ax, label=picked[2])
    r = result["pearson"][picked[0]][picked[1]]
    ax.set_title(f"r = {r:.2f} over {result['intervals']} intervals" if r is not None else "r undefined")
    ax.set_xlabel(picked[0])
    ax.set_ylabel(picked[1])
    ax.grid(alpha=0.3)
