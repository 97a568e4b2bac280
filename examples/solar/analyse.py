"""Analyse one PV site's power measurements with solar-data-tools.

    python analyse.py data/power/site-01.csv     # one site: prints its results as JSON

The file is a CSV with a ``timestamp`` column (local standard time) and a ``power_kw`` column,
as a monitoring portal exports it. The solar-data-tools pipeline (with the open CLARABEL
solver) cleans it, scores its quality, finds clear days, capacity changes and clock shifts;
main() returns what it found as one flat record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from solardatatools import DataHandler

COLUMNS = ("timestamp", "power_kw")
MIN_LEVEL_DAYS = 30  #: days a capacity level must last to count as a change


def read_measurements(path: Path) -> pd.DataFrame:
    """The file's power readings indexed by time; a ValueError naming the file otherwise."""
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:  # empty, binary, ragged rows
        raise ValueError(f"{path.name}: not a CSV table of power readings: {exc}") from None
    if not set(COLUMNS) <= set(frame.columns):
        raise ValueError(
            f"{path.name}: expected the columns {', '.join(COLUMNS)} (comma-separated), found {list(frame.columns)}"
        )
    try:
        frame.index = pd.to_datetime(frame["timestamp"])
        power = pd.to_numeric(frame["power_kw"])
    except ValueError as exc:
        raise ValueError(f"{path.name}: cannot read its timestamps or power values: {exc}") from None
    return power.to_frame("power_kw")


class Level(NamedTuple):
    """One capacity level the pipeline found: from which day, and how much power it gives."""

    start: int  #: first day of its longest unbroken stretch
    peak_kw: float  #: 98th percentile of its daily maxima
    good_day_kw: float  #: 90th percentile of its daily maxima: what a drop is measured on


def capacity_levels(handler: DataHandler) -> list[Level]:
    """The capacity levels the pipeline found, in time order, counting only levels held for
    MIN_LEVEL_DAYS or more (a dark fortnight in winter is weather, not a lost string); daily
    maxima from days without data errors. A level's edge may be placed weeks off, lending it a few
    days of its neighbour: its 90th percentile shrugs them off where its maximum would not."""
    peaks = np.nanmax(handler.filled_data_matrix, axis=0)
    good = np.array(handler.daily_flags.no_errors, dtype=bool)  # a copy: filled in below if empty
    if not good.any():
        good[:] = True
    labels = np.zeros(len(peaks), dtype=int)
    if handler.capacity_changes and handler.capacity_analysis is not None:
        labels = np.asarray(handler.capacity_analysis.labels)
    levels = []  # by median day: a level may also hold a few stray days far from the rest
    for label in set(labels.tolist()):
        mine = labels == label
        if mine.sum() >= MIN_LEVEL_DAYS and (good & mine).any():
            level = Level(_longest_run(mine), *np.quantile(peaks[good & mine], [0.98, 0.9]).tolist())
            levels.append((float(np.median(np.flatnonzero(mine))), level))
    return [level for _, level in sorted(levels)] or [Level(0, *np.quantile(peaks[good], [0.98, 0.9]).tolist())]


def _longest_run(mask: np.ndarray) -> int:
    """Where the longest stretch of True in ``mask`` starts."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    starts, ends = edges[::2], edges[1::2]
    return int(starts[np.argmax(ends - starts)])


def main(path: str) -> dict[str, Any]:
    """Run the solar-data-tools pipeline on one site's file and summarise what it found."""
    file = Path(path)
    handler = DataHandler(read_measurements(file))
    handler.run_pipeline(power_col="power_kw", fix_shifts=True, solver="CLARABEL", verbose=False)
    report = handler.report(verbose=False, return_values=True)
    if report is None:  # the pipeline gave up (it prints why rather than raising)
        raise ValueError(f"{file.name}: solar-data-tools could not analyse it:{handler._error_msg}")
    shifts = handler.time_shift_analysis
    levels = capacity_levels(handler)
    corrections = np.zeros(handler.num_days) if shifts is None else np.asarray(shifts.correction_estimate)
    return {
        "days": int(handler.num_days),
        "sampling_minutes": int(report["sampling"]),
        "capacity_kw": round(float(report["capacity"]), 3),  # solar-data-tools': 95th percentile of readings
        "peak_kw": round(levels[0].peak_kw, 3),
        "quality_score": round(float(report["quality score"]), 3),
        "bad_days": int(handler.num_days - np.sum(handler.daily_flags.no_errors)),
        "clear_days": int(np.sum(handler.daily_flags.clear)),
        "capacity_change": len(levels) > 1,
        "capacity_ratio": round(levels[-1].good_day_kw / levels[0].good_day_kw, 3),
        "capacity_change_from": str(handler.day_index[levels[-1].start].date()) if len(levels) > 1 else "",
        "time_shift": bool(report["time shift correction"]),
        "shifted_days": int(np.count_nonzero(corrections)),
        "time_shift_minutes": int(np.max(np.abs(corrections), initial=0)),
        "time_zone_correction_hours": int(report["time zone correction"]),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {Path(__file__).name} FILE.csv")
    print(json.dumps(main(sys.argv[1]), indent=2))
