"""The run report: report.json, performance.txt, runtime.png and throughput.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoal.outputs import atomic_write, export_results
from shoal.store import Ledger


def write_report(ledger: Ledger, job_id: str, out: Path, *, charts: bool = True) -> dict[str, Any]:
    """Export results and write every report file into the run folder; returns report.json's data."""
    from shoal.report.stats import JobData, performance_text, summarize

    export_results(ledger, job_id, out)
    data = JobData.load(ledger, job_id)
    report = summarize(data)
    with atomic_write(out / "report.json") as handle:
        json.dump(report, handle, indent=2)
    with atomic_write(out / "performance.txt") as handle:
        handle.write(performance_text(report))
    if charts:
        from shoal.report.charts import runtime_chart, throughput_chart

        with atomic_write(out / "runtime.png", "wb") as handle:
            runtime_chart(data, handle)
        with atomic_write(out / "throughput.png", "wb") as handle:
            throughput_chart(data, handle)
    return report
