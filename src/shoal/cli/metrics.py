"""`shoal metrics export` and `shoal metrics summarize`: Prometheus history into datasets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli._console import stderr_console, stdout_console
from shoal.errors import ConfigError, MissingDependencyError

app = typer.Typer(name="metrics", help="Export Prometheus metrics and correlate them with runs.", no_args_is_help=True)

PrometheusURL = Annotated[
    str,
    typer.Option(
        "--prometheus", envvar="SHOAL_PROMETHEUS_URL", metavar="URL", help="Prometheus base URL", show_default=False
    ),
]
Start = Annotated[
    str, typer.Option(metavar="TIME", help="ISO 8601 with a zone (2026-11-25T13:00:00+01:00), epoch s, or now")
]
End = Annotated[str, typer.Option(metavar="TIME", help="ISO 8601 with a zone, epoch seconds, or now")]
Step = Annotated[str, typer.Option(metavar="SPAN", help="resolution: 5s, 1m, ...")]
Match = Annotated[str, typer.Option(metavar="REGEX", help="regular expression the metric name must match in full")]
OutDir = Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="folder to write into", show_default=False)]
Timeout = Annotated[float, typer.Option(metavar="SECONDS", help="seconds one request may take in all")]
Retries = Annotated[int, typer.Option(metavar="N", help="times a failed request is tried again")]
Feed = Annotated[Path | None, typer.Option(metavar="PATH", help="feed log CSV: time (UTC ISO), bytes, item_id")]
Run = Annotated[Path | None, typer.Option(metavar="RUN_DIR", help="run folder holding results.jsonl")]
Metrics = Annotated[Path | None, typer.Option(metavar="DIR", help="a `shoal metrics export` folder")]
Interval = Annotated[str, typer.Option(metavar="SPAN", help="length of one row of the table: 10s, 1m, ...")]


@app.command("export", short_help="Prometheus series of a time range into CSV and Parquet")
def export_command(
    prometheus: PrometheusURL,
    start: Start,
    end: End,
    out: OutDir,
    step: Step = "5s",
    match: Match = ".+",
    timeout: Timeout = 30.0,
    retries: Retries = 3,
) -> int:
    """Write every matching series from START to END into OUT/metrics.csv and metrics.parquet."""
    from shoal.metrics._times import parse_duration, parse_time

    first, last, seconds = parse_time(start), parse_time(end), parse_duration(step)
    if last < first:
        raise ConfigError(f"--end {end} is before --start {start}")
    try:
        re.compile(match)
    except re.error as exc:
        raise ConfigError(f"--match {match!r} is not a regular expression: {exc}") from None
    try:
        from shoal.metrics._prometheus import PrometheusAPI
        from shoal.metrics.export import export
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "httpx", "metrics") from None
    console = stderr_console()
    with PrometheusAPI(prometheus, timeout=timeout, retries=retries) as api:
        result = export(api, first, last, seconds, match, out, on_metric=lambda m: console.print(f"exporting {m}"))
    print(f"{result.points} points of {result.series} series ({result.metrics} metrics) written to {out}")
    for gap in result.missing:
        console.print(f"[red]missing[/]: {gap.metric} from {gap.start} to {gap.end}: {gap.reason}", highlight=False)
    if result.missing:
        console.print(f"{len(result.missing)} ranges could not be fetched; they are listed in {out / 'missing.csv'}")
        return 1
    return 0


@app.command("summarize", short_help="join a feed log, run latencies and metrics; correlate")
def summarize_command(
    out: OutDir,
    feed: Feed = None,
    run: Run = None,
    metrics: Metrics = None,
    interval: Interval = "10s",
) -> int:
    """Join a feed log, a run's item latencies and exported metrics per interval; correlate them."""
    from shoal.metrics import summarize as s
    from shoal.metrics._times import parse_duration

    seconds = parse_duration(interval)
    names, table = s.summarize(s.load(feed, run, metrics), seconds)
    result = s.correlations(names, table)
    s.write(out, names, table, result, seconds)
    console = stdout_console()
    console.print(f"{len(table)} intervals of {seconds:g} s; Pearson r over {result['intervals']} complete ones:")
    for a in result["columns"]:
        cells = "  ".join(_cell(result["pearson"][a][b]) for b in result["columns"])
        console.print(f"  {a:>20}  {cells}", highlight=False)
    console.print(f"summary.csv, correlations.json and summary.png written to {out}")
    return 0


def _cell(value: float | None) -> str:
    return f"{value:+.3f}" if value is not None else "   n/a"
