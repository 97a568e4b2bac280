"""The run report: result files, report.json, performance.txt, runtime.png and throughput.png,
all from one pass over the job's rows (report.scan), in bounded memory at any size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoal.store import Ledger


def write_report(ledger: Ledger, job_id: str, out: Path, *, charts: bool = True) -> dict[str, Any]:
    """Export results and write every report file into the run folder; returns report.json's data."""
    from shoal.outputs import ResultFiles
    from shoal.report.scan import scan
    from shoal.report.stats import Figures, performance_text
    from shoal.report.timeline import Timeline
    from shoal.run_folder import atomic_write

    job, runs = ledger.get_job(job_id), ledger.runs(job_id)
    files, figures = ResultFiles(out), Figures(job, runs)
    timeline = Timeline(job, runs) if charts else None
    try:
        scan(ledger, job, [files, figures, *([timeline] if timeline is not None else [])])
    except BaseException:
        files.abandon()
        raise
    try:  # the charts are drawn while the files' last pages are written on their thread (Arrow)
        report = figures.summary()
        if timeline is not None:
            draw_charts(ledger, job_id, timeline, out)
    finally:
        files.close()
    with atomic_write(out / "performance.txt") as handle:
        handle.write(performance_text(report))
    with atomic_write(out / "report.json") as handle:  # last: a folder holding it holds the whole report
        json.dump(report, handle, indent=2)
    return report


def summarize(ledger: Ledger, job_id: str) -> dict[str, Any]:
    """report.json's figures for a job as it is now (one pass, no files written)."""
    from shoal.report.scan import scan
    from shoal.report.stats import Figures

    job = ledger.get_job(job_id)
    figures = Figures(job, ledger.runs(job_id))
    scan(ledger, job, [figures])
    return figures.summary()


def job_timeline(ledger: Ledger, job_id: str) -> Any:
    """The job's Timeline (for its charts), from one pass over its rows."""
    from shoal.report.scan import scan
    from shoal.report.timeline import Timeline

    job = ledger.get_job(job_id)
    found = Timeline(job, ledger.runs(job_id))
    scan(ledger, job, [found])
    found.add_retries(ledger.events(job_id))
    return found


def draw_charts(ledger: Ledger, job_id: str, found: Any, out: Path) -> None:
    from shoal.report.charts import runtime_chart, throughput_chart
    from shoal.run_folder import atomic_write

    found.add_retries(ledger.events(job_id) if found.exact else [])
    with atomic_write(out / "runtime.png", "wb") as handle:
        runtime_chart(found, handle)
    with atomic_write(out / "throughput.png", "wb") as handle:
        throughput_chart(found, handle)
