"""The run folder's result files, exported from the ledger so each item appears exactly once.

results.jsonl and results.csv hold one record per succeeded item, errors.csv one row per failed
item. Every file is written beside its final name and renamed into place, so a reader never sees
half a file, and an interrupted run still leaves complete (partial-job) files.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

from shoal.store import Ledger

RESULT_COLUMNS = ("id", "input", "attempts", "worker", "started", "finished")
ERROR_COLUMNS = ("id", "input", "stage", "error_type", "message", "attempts")


def utc(timestamp: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-25T12:31:08.123Z."""
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_folder(location: str | Path) -> Path:
    """The run folder: a local directory, or any fsspec URL (``s3://bucket/prefix``) as a UPath."""
    if "://" not in str(location):
        return Path(location)
    from upath import UPath

    return cast(Path, UPath(str(location)))  # UPath speaks pathlib's API for any filesystem


def is_local(path: Path) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` completely or not at all (an object store's PUT is atomic by itself)."""
    if not is_local(path):
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        handle: IO[Any] = path.open(mode, **text)  # type: ignore[call-overload]
        with handle:
            yield handle
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(
            fd, mode, encoding=None if "b" in mode else "utf-8", newline="" if "b" not in mode else None
        ) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def export_results(ledger: Ledger, job_id: str, out: Path) -> None:
    """Write results.jsonl, results.csv and errors.csv for a job."""
    _results_jsonl(ledger, job_id, out / "results.jsonl")
    _results_csv(ledger, job_id, out / "results.csv")
    _errors_csv(ledger, job_id, out / "errors.csv")


def _results_jsonl(ledger: Ledger, job_id: str, path: Path) -> None:
    with atomic_write(path) as handle:
        for row in ledger.iter_items(job_id, "succeeded"):
            head = {"id": row["id"], "input": row["input"]}
            if row["meta"] is not None:
                head["meta"] = json.loads(row["meta"])
            tail = {
                "attempts": row["attempts"],
                "worker": row["worker"],
                "started": utc(row["started_at"]),
                "finished": utc(row["finished_at"]),
            }
            enqueued = head.get("meta", {}).get("enqueued_at") if isinstance(head.get("meta"), dict) else None
            if isinstance(enqueued, int | float) and row["finished_at"]:
                tail["latency_s"] = round(row["finished_at"] - enqueued, 6)  # a stream's item: sent to done
            # the result and seconds are JSON already: spliced in, never decoded and re-encoded
            handle.write(
                f'{json.dumps(head, ensure_ascii=False)[:-1]},"result":{row["result"]},'
                f'{json.dumps(tail)[1:-1]},"seconds":{row["seconds"] or "{}"}}}\n'
            )


def _results_csv(ledger: Ledger, job_id: str, path: Path) -> None:
    result_columns: dict[str, None] = {}
    meta_columns: dict[str, None] = {}
    stages: dict[str, None] = {}
    for row in ledger.iter_items(job_id, "succeeded"):  # first pass: the columns
        result_columns.update(dict.fromkeys(flatten(json.loads(row["result"]))))
        if row["meta"] is not None:
            meta_columns.update(dict.fromkeys(flatten(json.loads(row["meta"]))))
        stages.update(dict.fromkeys(json.loads(row["seconds"] or "{}")))
    clash = set(RESULT_COLUMNS)
    header = [
        *RESULT_COLUMNS,
        *(f"meta.{k}" for k in meta_columns),
        *((f"result.{k}" if k in clash else k) for k in result_columns),
        *(f"seconds.{s}" for s in stages),
    ]
    with atomic_write(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in ledger.iter_items(job_id, "succeeded"):
            result = flatten(json.loads(row["result"]))
            meta = flatten(json.loads(row["meta"])) if row["meta"] is not None else {}
            seconds = json.loads(row["seconds"] or "{}")
            writer.writerow(
                [
                    row["id"],
                    row["input"],
                    row["attempts"],
                    row["worker"],
                    utc(row["started_at"]),
                    utc(row["finished_at"]),
                    *(meta.get(k, "") for k in meta_columns),
                    *(result.get(k, "") for k in result_columns),
                    *(seconds.get(s, "") for s in stages),
                ]
            )


def _errors_csv(ledger: Ledger, job_id: str, path: Path) -> None:
    with atomic_write(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(ERROR_COLUMNS)
        for row in ledger.iter_items(job_id, "failed"):
            writer.writerow(
                [row["id"], row["input"], row["error_stage"], row["error_type"], row["error_message"], row["attempts"]]
            )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted columns; lists stay whole, as JSON text."""
    if not isinstance(value, dict):
        return {prefix or "value": _cell(value)}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(inner, dict) and inner:
            flat.update(flatten(inner, name))
        else:
            flat[name] = _cell(inner)
    return flat


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def export_parquet(ledger: Ledger, job_id: str, path: Path) -> None:
    """Write results.parquet: the columns of results.csv, typed where every value agrees.

    A column whose values mix types (a number here, a string there) is stored as JSON text, so
    one odd result never makes the whole file fail.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        from shoal.errors import MissingDependencyError

        raise MissingDependencyError("pyarrow", "web") from None
    rows = []
    for row in ledger.iter_items(job_id, "succeeded"):
        record: dict[str, Any] = {c: row[c] for c in ("id", "input", "attempts", "worker")}
        record["started"], record["finished"] = utc(row["started_at"]), utc(row["finished_at"])
        if row["meta"] is not None:
            record.update({f"meta.{k}": v for k, v in flatten(json.loads(row["meta"])).items()})
        record.update(
            {(f"result.{k}" if k in RESULT_COLUMNS else k): v for k, v in flatten(json.loads(row["result"])).items()}
        )
        record.update({f"seconds.{k}": v for k, v in json.loads(row["seconds"] or "{}").items()})
        rows.append(record)
    names = list(dict.fromkeys(name for record in rows for name in record)) or list(RESULT_COLUMNS)
    columns = {}
    for name in names:
        values = [record.get(name) for record in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    with atomic_write(path, "wb") as handle:
        pq.write_table(pa.table(columns), handle)
