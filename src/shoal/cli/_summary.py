"""The summary table printed at the end of `shoal run` and by `shoal report`."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from shoal.cli._console import coloured, stdout_console
from shoal.report.stats import SHORT_JOB_S, span
from shoal.store import Ledger

if TYPE_CHECKING:
    from shoal.runner import RunResult

SHOWN_FAILURES = 10


def print_result(result: RunResult) -> None:
    """The summary of a run that wrote its report (one interrupted early may not have)."""
    if result.report is None:
        return
    ledger = Ledger(result.db)
    try:
        print_summary(stdout_console(), ledger, result.job_id, result.report, result.out)
    finally:
        ledger.close()


def print_summary(console: Console, ledger: Ledger, job_id: str, report: dict[str, Any], out: Path) -> None:
    items, timing, dist = report["items"], report["timing"], report["item_seconds"]
    table = Table(title=f"shoal job {job_id}", show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    state = report["job"]["state"]
    table.add_row("state", coloured(state))
    short = timing["wall_s"] < SHORT_JOB_S
    table.add_row(
        "items",
        f"{items['total']} total, [green]{items['succeeded']} succeeded[/], [red]{items['failed']} failed[/], "
        f"{items['retried']} retried, {items['pending']} pending, {items['duplicates']} duplicate inputs",
    )
    table.add_row(
        "time",
        f"wall {timing['wall_s']:.2f} s, {_n(timing['items_per_s'])} items/s, speedup {_n(timing['speedup'])}x "
        f"on {timing['workers']} workers (efficiency {_n(timing['efficiency'])}), start-up {span(timing['startup_s'])}"
        + (f" (under {SHORT_JOB_S:.0f} s: mostly start-up, so speedup and efficiency say little)" if short else ""),
    )
    if dist["count"]:
        table.add_row(
            "item time",
            f"mean {span(dist['mean'])}, p50 {span(dist['p50'])}, p95 {span(dist['p95'])}, "
            f"min {span(dist['min'])} ({dist['min_item']}), max {span(dist['max'])} ({dist['max_item']})",
        )
    table.add_row("run folder", str(out))
    table.add_row("report", f"{out / 'performance.txt'}, runtime.png, throughput.png")
    console.print(table)
    if items["failed"]:
        _print_failures(console, ledger, job_id, items["failed"], out)


def _print_failures(console: Console, ledger: Ledger, job_id: str, count: int, out: Path) -> None:
    table = Table(title=f"failed items ({count}; all in {out / 'errors.csv'})", title_justify="left")
    for column in ("item", "input", "stage", "error"):
        table.add_column(column, overflow="fold")
    for row in islice(ledger.iter_items(job_id, "failed"), SHOWN_FAILURES):
        table.add_row(row["id"], row["input"], row["error_stage"] or "", f"{row['error_type']}: {row['error_message']}")
    console.print(table)


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
