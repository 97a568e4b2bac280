"""Finish functions: a job's own outputs, made once after all its items have run.

Items run apart, on any worker, in any order; some outputs need them all: segments of a video
joined into one, a table of every item, a summary. A pipeline's ``@pipeline.finish`` functions
do that. Each is called as ``function(out, items)`` in the process that runs the job (``shoal
run``, the server), after its last item and before the report, when the job ends succeeded or
completed with errors: ``out`` is the run folder (a ``Path``, or a ``UPath`` for a URL), and
``items`` the job's items in input order, each a dict, read from the ledger a page at a time
(never all in memory)::

    {"id": "vtest.avi-3f2a9c1b7d40@000200", "input": "...", "uri": "...", "meta": {...} or None,
     "status": "succeeded" or "failed", "result": {...} or None, "seconds": {stage: s} or None,
     "error_type": None or "ValueError", "error_message": None or "..."}

Item artifacts are in ``out / "artifacts" / item_id``. That process imports pipeline.py but does
not get the project's requirements.txt (the workers do): a finish function imports only what
the environment running shoal has. One that raises is logged with its traceback (in
``logs/finish.log`` of a local run folder); the job's outcome stands.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.run_folder import is_local

if TYPE_CHECKING:
    from shoal.pipeline import Pipeline
    from shoal.store import JobRecord, Ledger

log = logging.getLogger(__name__)
COLUMNS = ("id", "input", "uri", "meta", "status", "result", "seconds", "error_type", "error_message")
JSON_COLUMNS = ("meta", "result", "seconds")
RUNS_ON = ("succeeded", "completed_with_errors")  #: job states that call the finish functions


def finish(ledger: Ledger, job: JobRecord, pipeline: Pipeline, out: Path, state: str) -> None:
    """Call the pipeline's finish functions for a job that ended in ``state``."""
    if state not in RUNS_ON:
        return
    for function in getattr(pipeline, "finishers", ()):
        name = getattr(function, "__name__", repr(function))
        started = time.monotonic()
        try:
            function(out, items(ledger, job.id))
        except Exception as exc:
            _failed(out, name, exc)
        else:
            log.info("finish function %s took %.2f s", name, time.monotonic() - started)


def items(ledger: Ledger, job_id: str) -> Iterator[dict[str, Any]]:
    """A job's items in input order, as finish functions get them."""
    for row in ledger.iter_items(job_id, columns=COLUMNS):
        record = {name: row[name] for name in COLUMNS}
        for name in JSON_COLUMNS:
            if record[name] is not None:
                record[name] = json.loads(record[name])
        yield record


def _failed(out: Path, name: str, exc: Exception) -> None:
    where = ""
    if is_local(out):
        (out / "logs").mkdir(parents=True, exist_ok=True)
        with (out / "logs" / "finish.log").open("a", encoding="utf-8") as handle:
            handle.write(f"finish function {name}:\n{traceback.format_exc()}\n")
        where = f" (traceback in {out / 'logs' / 'finish.log'})"
    log.error("the finish function %s failed: %s: %s%s", name, type(exc).__name__, exc, where)
