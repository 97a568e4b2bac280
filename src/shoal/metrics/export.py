"""`shoal metrics export`: every matching series over a time range, into tidy CSV and Parquet.

Rows are (timestamp UTC, metric, labels, value), one per sample, grouped by metric. Prometheus
answers at most 11,000 points per series per query, so a long range is asked for in segments of
at most MAX_POINTS steps that abut without overlapping (the next starts one step after the last
ends). Each metric's segments are requested separately; a segment that still fails after its
retries is listed in missing.csv and reported, and the export goes on with the rest.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shoal.errors import ConfigError, MissingDependencyError, PrometheusError
from shoal.metrics._prometheus import PrometheusAPI
from shoal.metrics._times import iso

MAX_POINTS = 10_000  #: points per series per query; Prometheus refuses more than 11,000
COLUMNS = ("timestamp", "metric", "labels", "value")

Row = tuple[dt.datetime, str, str, float]


@dataclass(frozen=True)
class Gap:
    """A range of one metric that could not be fetched."""

    metric: str
    start: str  #: UTC ISO
    end: str
    reason: str


@dataclass
class ExportResult:
    """What an export wrote."""

    metrics: int = 0
    series: int = 0
    points: int = 0
    files: list[Path] = field(default_factory=list)
    missing: list[Gap] = field(default_factory=list)


def segments(start_ms: int, end_ms: int, step_ms: int, max_points: int = MAX_POINTS) -> list[tuple[int, int]]:
    """[(first, last)] in ms: every step from start to end once, at most ``max_points`` per segment."""
    if step_ms <= 0 or end_ms < start_ms:
        raise ConfigError("the range must end after it starts, with a step above zero")
    total = (end_ms - start_ms) // step_ms + 1
    return [
        (start_ms + k * step_ms, start_ms + (min(k + max_points, total) - 1) * step_ms)
        for k in range(0, total, max_points)
    ]


def export(
    api: PrometheusAPI,
    start: dt.datetime,
    end: dt.datetime,
    step: float,
    match: str,
    out: Path,
    *,
    on_metric: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export every series whose metric name matches ``match`` (a full-match RE2 regex)."""
    start_ms, end_ms, step_ms = _ms(start), _ms(end), round(step * 1000)
    parts = segments(start_ms, end_ms, step_ms)
    names = sorted(
        api.get(
            "/api/v1/label/__name__/values",
            {"match[]": f'{{__name__=~"{_quote(match)}"}}', "start": _s(start_ms), "end": _s(end_ms)},
        )
        or []
    )
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(metrics=len(names))
    with _Writers(out) as writers:
        for name in names:
            if on_metric is not None:
                on_metric(name)
            seen: set[str] = set()
            for first, last in parts:
                try:
                    rows = _fetch(api, name, first, last, step_ms, seen)
                except PrometheusError as exc:
                    result.missing.append(Gap(name, iso(_dt(first)), iso(_dt(last)), str(exc)))
                    continue
                result.points += writers.write(rows)
            result.series += len(seen)
        result.files = writers.paths
    _write_manifest(out, api.url, start, end, step, match, result)
    return result


def _fetch(api: PrometheusAPI, name: str, first: int, last: int, step_ms: int, seen: set[str]) -> list[Row]:
    data = api.get(
        "/api/v1/query_range",
        {"query": f'{{__name__="{_quote(name)}"}}', "start": _s(first), "end": _s(last), "step": _s(step_ms)},
    )
    rows: list[Row] = []
    for series in data.get("result", []):
        labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
        text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        seen.add(text)
        rows += [(_dt(round(float(t) * 1000)), name, text, float(v)) for t, v in series["values"]]
    return rows


class _Writers:
    """metrics.csv and metrics.parquet, appended a batch at a time (memory stays bounded)."""

    def __init__(self, out: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingDependencyError("pyarrow", "metrics") from None
        self._pa = pa
        self.paths = [out / "metrics.csv", out / "metrics.parquet"]
        self._schema = pa.schema(
            [
                ("timestamp", pa.timestamp("ms", tz="UTC")),
                ("metric", pa.string()),
                ("labels", pa.string()),
                ("value", pa.float64()),
            ]
        )
        self._csv_file = self.paths[0].open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(COLUMNS)
        self._parquet = pq.ParquetWriter(self.paths[1], self._schema, compression="zstd")

    def __enter__(self) -> _Writers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._parquet.close()
        self._csv_file.close()

    def write(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        self._csv.writerows((iso(t), m, lab, repr(v)) for t, m, lab, v in rows)
        columns = list(zip(*rows, strict=True))
        self._parquet.write_table(self._pa.Table.from_arrays([list(c) for c in columns], schema=self._schema))
        return len(rows)


def _write_manifest(
    out: Path, url: str, start: dt.datetime, end: dt.datetime, step: float, match: str, result: ExportResult
) -> None:
    with (out / "missing.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("metric", "start", "end", "reason"))
        writer.writerows((g.metric, g.start, g.end, g.reason) for g in result.missing)
    manifest: dict[str, Any] = {
        "prometheus": url,
        "start": iso(start),
        "end": iso(end),
        "step_s": step,
        "match": match,
        "metrics": result.metrics,
        "series": result.series,
        "points": result.points,
        "missing": [asdict(g) for g in result.missing],
    }
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")


def iter_rows(path: Path, metrics: set[str] | None = None) -> Iterator[Row]:
    """Read an export back (a folder, metrics.parquet or metrics.csv), optionally some metrics only."""
    if path.is_dir():
        path = path / "metrics.parquet" if (path / "metrics.parquet").exists() else path / "metrics.csv"
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, filters=[("metric", "in", sorted(metrics))] if metrics else None)
        yield from zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True)
        return
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if metrics is None or row["metric"] in metrics:
                stamp = dt.datetime.fromisoformat(row["timestamp"])
                yield stamp, row["metric"], row["labels"], float(row["value"])


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def _s(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _dt(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
