"""`shoal metrics summarize`: one table per time interval joining what was fed in, how long items
took, and what the machines did, with the correlations between input rate, latency and CPU.

Sources, each optional but at least one of the first two:
- a feed log (CSV: ``time`` UTC ISO, ``bytes``, ``item_id``; written by `shoal feed`);
- a run folder's results.jsonl (``id``, ``started``, ``finished`` UTC ISO per item): processing
  latency is finished - started; end-to-end latency is finished - the feed log's time for the
  same item id, where the feed log has it;
- a `shoal metrics export` folder: CPU from node_cpu_seconds_total (busy share, 1 - idle) or
  else process_cpu_seconds_total (cores), memory from node_memory_*, network from node_network_*.
Items are counted in the interval in which they finished; counters are turned into rates per
interval from consecutive samples, counter resets included.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shoal.errors import ConfigError
from shoal.metrics._times import iso
from shoal.metrics.export import iter_rows

RESOURCE_METRICS = {
    "node_cpu_seconds_total",
    "process_cpu_seconds_total",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
}
ID_COLUMNS = ("item_id", "item", "id")


@dataclass
class Sources:
    """Raw samples from each source, times in UTC epoch seconds."""

    sent: list[tuple[float, float, str]] = field(default_factory=list)  #: (time, bytes, item id)
    items: list[tuple[float, float, str]] = field(default_factory=list)  #: (started, finished, item id)
    metrics: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)  #: (metric, labels)

    def span(self) -> tuple[float, float]:
        """The time the table covers: the feed's (when fed: later finishes are its tail), else the results'."""
        times = [t for t, _, _ in self.sent] or [f for _, f, _ in self.items]
        if not times:
            raise ConfigError("the feed log and the results hold no items: nothing to summarize")
        return min(times), max(times)


def load(feed: Path | None, run: Path | None, metrics: Path | None) -> Sources:
    if feed is None and run is None:
        raise ConfigError("give --feed (a feed log) or --run (a run folder), or both")
    sources = Sources()
    if feed is not None:
        sources.sent = list(_feed(feed))
    if run is not None:
        sources.items = list(_results(run))
    if metrics is not None:
        if not metrics.exists():
            raise ConfigError(f"no metrics export at {metrics} (make one with `shoal metrics export`)")
        for stamp, metric, labels, value in iter_rows(metrics, RESOURCE_METRICS):
            sources.metrics.setdefault((metric, labels), []).append((stamp.timestamp(), value))
    return sources


def summarize(sources: Sources, interval: float) -> tuple[list[str], np.ndarray[Any, Any]]:
    """(column names, table): one row per interval, NaN where a source says nothing.

    The first and last intervals may be partly covered by the data: their item rates are divided
    by the seconds covered (``covered_s``), and left empty when that is under half an interval.
    """
    lo, hi = sources.span()
    t0 = math.floor(lo / interval) * interval
    n = int((hi - t0) // interval) + 1
    starts = t0 + interval * np.arange(n)
    covered = np.clip(np.minimum(starts + interval, hi) - np.maximum(starts, lo), 0, interval)
    seconds = np.where(covered >= interval / 2, covered, math.nan)
    columns: dict[str, np.ndarray[Any, Any]] = {"start": starts, "covered_s": covered}
    _feed_columns(columns, sources, t0, interval, seconds)
    _item_columns(columns, sources, t0, interval, seconds)
    _resource_columns(columns, sources, t0, n, interval)
    return list(columns), np.column_stack(list(columns.values()))


def correlations(names: list[str], table: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Pearson correlations of input rate, p95 latency and CPU over intervals that have all three."""
    chosen = [_first(names, table, c) for c in _CANDIDATES]
    picked = [c for c in chosen if c is not None]
    data = np.column_stack([table[:, names.index(c)] for c in picked]) if picked else np.empty((0, 0))
    rows = data[np.all(np.isfinite(data), axis=1)] if picked else data
    matrix: dict[str, dict[str, float | None]] = {a: {} for a in picked}
    for i, a in enumerate(picked):
        for j, b in enumerate(picked):
            matrix[a][b] = _pearson(rows[:, i], rows[:, j]) if len(rows) >= 3 else None
    return {"columns": picked, "intervals": len(rows), "pearson": matrix}


_CANDIDATES = (
    ("input_mb_per_s", "input_items_per_s"),
    ("e2e_p95_s", "processing_p95_s"),
    ("cpu_busy_ratio", "process_cpu_cores"),
)


def write(out: Path, names: list[str], table: np.ndarray[Any, Any], result: dict[str, Any], interval: float) -> None:
    """summary.csv, correlations.json and summary.png in ``out``."""
    from shoal.metrics._plot import plot

    out.mkdir(parents=True, exist_ok=True)
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in table:
            start = iso(dt.datetime.fromtimestamp(row[0], dt.UTC))
            writer.writerow([start, *("" if not math.isfinite(v) else f"{v:.6g}" for v in row[1:])])
    (out / "correlations.json").write_text(json.dumps({"interval_s": interval, **result}, indent=2) + "\n")
    plot(names, table, result, out / "summary.png")


# --- reading ---------------------------------------------------------------------------------
def _feed(path: Path) -> Iterable[tuple[float, float, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            id_column = next((c for c in ID_COLUMNS if c in fields), None)
            if "time" not in fields or id_column is None:
                raise ConfigError(f"feed log {path} needs columns time, bytes and item_id; it has {fields}")
            for line, row in enumerate(reader, start=2):
                size = float(row.get("bytes") or 0)
                yield _utc(row["time"], f"{path}, line {line}"), size, row[id_column]
    except OSError as exc:
        raise ConfigError(f"cannot read the feed log {path}: {exc.strerror}") from None


def _results(run: Path) -> Iterable[tuple[float, float, str]]:
    path = run / "results.jsonl" if run.is_dir() else run
    try:
        with path.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                record = json.loads(text)
                where = f"{path}, line {line}"
                yield _utc(record["started"], where), _utc(record["finished"], where), record["id"]
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror} (give a run folder holding results.jsonl)") from None


def _utc(text: str, where: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{where}: time {text!r} has no zone (shoal writes UTC times ending in Z)")
    return moment.timestamp()


# --- columns ---------------------------------------------------------------------------------
def _bins(times: Iterable[float], t0: float, n: int, interval: float) -> tuple[np.ndarray[Any, Any], Any]:
    """Each time's interval index, and which times fall inside the table."""
    index: np.ndarray[Any, Any] = ((np.fromiter(times, float) - t0) // interval).astype(int)
    return index, (index >= 0) & (index < n)


def _feed_columns(columns: dict[str, Any], sources: Sources, t0: float, interval: float, seconds: Any) -> None:
    if not sources.sent:
        return
    n = len(seconds)
    index, inside = _bins((t for t, _, _ in sources.sent), t0, n, interval)
    sizes = np.fromiter((b for _, b, _ in sources.sent), float)
    columns["input_items_per_s"] = np.bincount(index[inside], minlength=n) / seconds
    columns["input_mb_per_s"] = np.bincount(index[inside], weights=sizes[inside], minlength=n) / seconds / 1e6


def _item_columns(columns: dict[str, Any], sources: Sources, t0: float, interval: float, seconds: Any) -> None:
    if not sources.items:
        return
    n = len(seconds)
    index, inside = _bins((f for _, f, _ in sources.items), t0, n, interval)
    columns["done_items_per_s"] = np.bincount(index[inside], minlength=n) / seconds
    processing = np.fromiter((f - s for s, f, _ in sources.items), float)
    columns["processing_p50_s"], columns["processing_p95_s"] = _percentiles(index[inside], processing[inside], n)
    sent = {item: t for t, _, item in sources.sent}
    e2e = np.fromiter((f - sent[i] if i in sent else math.nan for _, f, i in sources.items), float)
    if np.isfinite(e2e[inside]).any():
        columns["e2e_p50_s"], columns["e2e_p95_s"] = _percentiles(index[inside], e2e[inside], n)


def _percentiles(
    index: np.ndarray[Any, Any], values: np.ndarray[Any, Any], n: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    p50, p95 = np.full(n, math.nan), np.full(n, math.nan)
    keep = np.isfinite(values)
    index, values = index[keep], values[keep]
    order = np.argsort(index, kind="stable")
    index, values = index[order], values[order]
    bounds = np.flatnonzero(np.diff(index)) + 1
    for group, chunk in zip(np.split(index, bounds), np.split(values, bounds), strict=True):
        if len(group):
            p50[group[0]], p95[group[0]] = np.percentile(chunk, [50, 95])
    return p50, p95


def _resource_columns(columns: dict[str, Any], sources: Sources, t0: float, n: int, interval: float) -> None:
    increase: dict[str, np.ndarray[Any, Any]] = defaultdict(lambda: np.zeros(n))
    level: dict[str, list[np.ndarray[Any, Any]]] = defaultdict(list)
    for (metric, text), samples in sources.metrics.items():
        labels = json.loads(text)
        if metric == "node_cpu_seconds_total":
            _add_increase(
                increase["cpu_idle" if labels.get("mode") == "idle" else "cpu_busy"], samples, t0, n, interval
            )
        elif metric in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"):
            if labels.get("device") != "lo":
                _add_increase(increase[metric], samples, t0, n, interval)
        elif metric == "process_cpu_seconds_total":
            _add_increase(increase[metric], samples, t0, n, interval)
        else:
            level[metric].append(_mean_level(samples, t0, n, interval))
    if "cpu_busy" in increase or "cpu_idle" in increase:
        busy, idle = increase["cpu_busy"], increase["cpu_idle"]
        with np.errstate(invalid="ignore", divide="ignore"):
            columns["cpu_busy_ratio"] = np.where(busy + idle > 0, busy / (busy + idle), math.nan)
    if "process_cpu_seconds_total" in increase:
        columns["process_cpu_cores"] = increase["process_cpu_seconds_total"] / interval
    if level["node_memory_MemTotal_bytes"] and level["node_memory_MemAvailable_bytes"]:
        total = np.sum(level["node_memory_MemTotal_bytes"], axis=0)
        columns["memory_used_bytes"] = total - np.sum(level["node_memory_MemAvailable_bytes"], axis=0)
    for metric, name in (
        ("node_network_receive_bytes_total", "network_rx_bytes_per_s"),
        ("node_network_transmit_bytes_total", "network_tx_bytes_per_s"),
    ):
        if metric in increase:
            columns[name] = increase[metric] / interval


def _add_increase(
    into: np.ndarray[Any, Any], samples: list[tuple[float, float]], t0: float, n: int, interval: float
) -> None:
    """Add a counter's increase to the interval of each later sample (a drop is a reset)."""
    samples.sort()
    times = np.fromiter((t for t, _ in samples), float)
    values = np.fromiter((v for _, v in samples), float)
    if len(values) < 2:
        return
    delta = np.diff(values)
    delta = np.where(delta < 0, values[1:], delta)
    index = ((times[1:] - t0) // interval).astype(int)
    keep = (index >= 0) & (index < n)
    into += np.bincount(index[keep], weights=delta[keep], minlength=n)


def _mean_level(samples: list[tuple[float, float]], t0: float, n: int, interval: float) -> np.ndarray[Any, Any]:
    times = np.fromiter((t for t, _ in samples), float)
    values = np.fromiter((v for _, v in samples), float)
    index = ((times - t0) // interval).astype(int)
    keep = (index >= 0) & (index < n)
    sums = np.bincount(index[keep], weights=values[keep], minlength=n)
    counts = np.bincount(index[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)


def _first(names: list[str], table: np.ndarray[Any, Any], candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name in names and np.isfinite(table[:, names.index(name)]).any():
            return name
    return None


def _pearson(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float | None:
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 4)
