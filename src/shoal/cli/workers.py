"""`shoal workers --broker URL`: the `shoal worker`s of a broker, what each runs now, lost ones marked."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from shoal.cli._console import stdout_console
from shoal.cli.worker import BrokerUrl
from shoal.errors import ConfigError

Json = Annotated[bool, typer.Option("--json", help="print the workers as JSON, one object each in a list")]
LogOf = Annotated[
    str | None, typer.Option("--log", metavar="NAME", help="print the last lines of this worker's log instead")
]
Lines = Annotated[int, typer.Option(metavar="N", help="lines of log to print with --log")]


def workers_command(broker: BrokerUrl = None, json_output: Json = False, log: LogOf = None, lines: Lines = 50) -> int:
    """List the workers on a broker: host, pid, queue, busy processes and their items, counters, memory."""
    from shoal._json import dumps
    from shoal.engines.celery.status import Fleet

    if not broker:
        raise ConfigError("shoal workers needs a broker: --broker URL or SHOAL_BROKER_URL")
    fleet = Fleet(broker)
    try:
        if log is not None:
            found = fleet.log(log, lines)
            if found is None:
                raise ConfigError(f"worker {log!r} did not answer (see `shoal workers --broker URL` for names)")
            for file in found.get("files", []):
                sys.stdout.write(f"==> {file['path']} <==\n" + "".join(line + "\n" for line in file["lines"]))
            return 0
        workers = fleet.workers()
    finally:
        fleet.close()
    if json_output:
        sys.stdout.write(dumps(workers) + "\n")
        return 0
    stdout_console().print(_table(workers))
    return 0


def _table(workers: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(workers)} worker(s)", title_justify="left")
    for column in ("name", "state", "queue", "version", "busy", "running", "done", "failed", "RSS", "CPU", "beat"):
        table.add_column(column, overflow="fold")
    for w in workers:
        running = "; ".join(
            f"{p['pid']}: {', '.join(map(str, p['items']))}" for p in w.get("processes", []) if p.get("items")
        )
        cpu = w.get("cpu_percent")
        table.add_row(
            str(w.get("name")),
            "[red]lost[/red]" if w["state"] == "lost" else "[green]up[/green]",
            str(w.get("queue")),
            str(w.get("fingerprint") or "any: " + (", ".join(w.get("loaded") or []) or "none loaded")),
            f"{w.get('busy', 0)}/{w.get('concurrency', '?')}",
            running,
            str(w.get("done", 0)),
            str(w.get("failed", 0)),
            f"{int(w.get('rss') or 0) / 2**20:.0f} MiB",
            "" if cpu is None else f"{cpu:g}%",
            f"{w['seconds_since_heartbeat']:g} s ago",
        )
    return table
