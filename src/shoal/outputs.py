"""The run folder's result files, exported from the ledger so each item appears exactly once.

results.jsonl, results.csv and results.parquet hold one record per succeeded item, errors.csv one
row per failed item. They are written in one pass over the job's rows (report.scan), a page at a
time, so a job of ten million items is exported in bounded memory. Every file is written beside
its final name and renamed into place, so a reader never sees half a file, and an interrupted run
still leaves complete (partial-job) files.

The tables (CSV and Parquet) are built with Arrow a page at a time: results, row fields and stage
seconds are flattened into dotted columns (lists stay whole, as JSON text). When a later page
brings a column the earlier ones lacked, or a value of another type, the file goes on in a new
segment; the segments are joined once at the end (a column whose values disagree in type holds
them as JSON text), so the common case costs a single pass.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from shoal.report.scan import Page, joined_lines, json_table, scan
from shoal.run_folder import is_local
from shoal.store import Ledger

RESULT_COLUMNS = ("id", "input", "attempts", "worker", "started", "finished")
ERROR_COLUMNS = ("id", "input", "stage", "error_type", "message", "attempts")
RESULT_FILES = ("results.jsonl", "results.csv", "results.parquet", "errors.csv")


def utc_many(stamps: Sequence[float | None] | np.ndarray[Any, Any]) -> list[str | None]:
    """utc() of many timestamps at once (the same text, at a fraction of the cost); None (or
    NaN) stays None."""
    seconds = np.asarray(stamps, dtype=float)
    millis = np.floor(np.round(seconds * 1e6) / 1000)  # as datetime does: to the microsecond, then cut to ms
    text: list[str | None] = np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()
    if np.isnan(seconds).any():
        text = [None if t == "NaT" else t for t in text]
    return text


def export_results(ledger: Ledger, job_id: str, out: Path) -> None:
    """Write results.jsonl, results.csv, results.parquet and errors.csv for a job, in one pass."""
    files = ResultFiles(out)
    try:
        scan(ledger, ledger.get_job(job_id), [files])
    except BaseException:
        files.abandon()
        raise
    files.close()


class ResultFiles:
    """The result files of a run folder, written as pages of rows arrive (a report.scan consumer).

    Pages are written on a thread of the files' own, in order, while the report's figures are
    gathered on the caller's: Arrow and the file system let go of the GIL, so on two cores a
    report costs little more than its slowest part."""

    AHEAD = 2  #: pages waiting for the writer at most

    def __init__(self, out: Path) -> None:
        self.out = out
        if is_local(out):
            out.mkdir(parents=True, exist_ok=True)
        self._work = Path(tempfile.mkdtemp(prefix=".shoal-results-", dir=out if is_local(out) else None))
        self._jsonl = (self._work / "results.jsonl").open("wb")
        self._errors = (self._work / "errors.csv").open("w", encoding="utf-8", newline="")
        self._error_rows = csv.writer(self._errors)
        self._error_rows.writerow(ERROR_COLUMNS)
        self._table = _Table(self._work)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="shoal-results")
        self._writing: deque[Future[None]] = deque()

    def add(self, page: Page) -> None:
        while len(self._writing) >= self.AHEAD:
            self._writing.popleft().result()  # a failure to write surfaces here
        self._writing.append(self._writer.submit(self._write, page))

    def _write(self, page: Page) -> None:
        if page.succeeded.any():
            done = pa.array(page.succeeded)
            ok = page.batch.filter(done)
            started, finished = _iso(page.started[page.succeeded]), _iso(page.finished[page.succeeded])
            self._jsonl.write(_jsonl(ok, started, finished))
            self._table.add(ok, started, finished, {k: v[page.succeeded] for k, v in page.seconds.items()})
        if page.failed.any():
            bad = page.batch.filter(pa.array(page.failed)).to_pydict()
            self._error_rows.writerows(
                zip(*(bad[c] for c in ("id", "input", "error_stage", "error_type", "error_message", "attempts")),
                    strict=True)
            )  # fmt: skip

    def close(self) -> None:
        try:
            while self._writing:
                self._writing.popleft().result()
        finally:
            self._writer.shutdown()
        self._jsonl.close()
        self._errors.close()
        self._table.close()
        try:
            for name in RESULT_FILES:
                _publish(self._work / name, self.out / name)
        finally:
            shutil.rmtree(self._work, ignore_errors=True)

    def abandon(self) -> None:
        for pending in self._writing:
            pending.cancel()
        self._writer.shutdown(wait=True)
        self._jsonl.close()
        self._errors.close()
        self._table.abandon()
        shutil.rmtree(self._work, ignore_errors=True)


def _publish(source: Path, target: Path) -> None:
    if is_local(target):
        os.replace(source, target)
        return
    with source.open("rb") as handle, target.open("wb") as remote:  # an object store's PUT is atomic
        shutil.copyfileobj(handle, remote, 1 << 20)


def _iso(stamps: np.ndarray[Any, Any]) -> pa.Array:
    """utc() of a column of epoch seconds, as Arrow text (null for NaN)."""
    millis = np.floor(np.round(stamps * 1e6) / 1000)  # as datetime does: to the microsecond, then cut to ms
    known = ~np.isnan(millis)
    moments = pa.array(np.where(known, millis, 0).astype(np.int64), pa.timestamp("ms"), mask=~known)  # UTC
    text = pc.replace_substring(moments.cast(pa.string()), " ", "T", max_replacements=1)  # 20x strftime's speed
    return pc.binary_join_element_wise(text, "Z", "")


_ESCAPED = r'["\\\x00-\x1f]'  #: what JSON cannot write between quotes as it is


def _jsonl(ok: pa.RecordBatch, started: pa.Array, finished: pa.Array) -> bytes:
    """results.jsonl records of succeeded rows. The result, fields and seconds are JSON already:
    spliced in, never decoded and encoded again. Pages whose names need no escaping, and whose
    rows all have fields or none do (nearly all), are joined by Arrow without a Python object per
    value; others (and a stream's items, whose latency is worked out) go row by row."""
    names = [ok.column(c) for c in ("id", "input", "worker")]
    plain = not any(pc.any(pc.match_substring_regex(c, _ESCAPED)).as_py() for c in names)
    meta = ok.column("meta")
    with_meta = pc.not_equal(meta, "")
    every, some = pc.all(with_meta).as_py(), pc.any(with_meta).as_py()
    streamed = some and pc.any(pc.match_substring(meta, "enqueued_at")).as_py()
    if plain and not streamed and not started.null_count and (every or not some):
        seconds = pc.if_else(pc.equal(ok.column("seconds"), ""), "{}", ok.column("seconds"))
        fields = ['","meta":', meta, ',"result":'] if every else ['","result":']
        pieces = [
            '{"id":"', ok.column("id"), '","input":"', ok.column("input"), *fields, ok.column("result"),
            ',"attempts":', pc.cast(ok.column("attempts"), pa.string()), ',"worker":"', ok.column("worker"),
            '","started":"', started, '","finished":"', finished, '","seconds":', seconds, "}",
        ]  # fmt: skip
        return joined_lines(pc.binary_join_element_wise(*pieces, ""))
    return _jsonl_slowly(ok.to_pydict(), started.to_pylist(), finished.to_pylist()).encode()


def _jsonl_slowly(rows: dict[str, list[Any]], started: list[str | None], finished: list[str | None]) -> str:
    lines = []
    for n, row_id in enumerate(rows["id"]):
        meta, done = rows["meta"][n], rows["finished_at"][n]
        line = f'{{"id":{_quoted(row_id)},"input":{_quoted(rows["input"][n])}'
        if meta:
            line += f',"meta":{meta}'
        line += f',"result":{rows["result"][n] or "{}"},"attempts":{rows["attempts"][n]}'
        line += f',"worker":{_quoted(rows["worker"][n] or None)},"started":{_quoted(started[n])}'
        line += f',"finished":{_quoted(finished[n])}'
        if meta and "enqueued_at" in meta:
            enqueued = orjson.loads(meta).get("enqueued_at")
            if isinstance(enqueued, int | float) and done > 0:  # a stream's item: sent to done
                line += f',"latency_s":{round(done - enqueued, 6)}'
        lines.append(f'{line},"seconds":{rows["seconds"][n] or "{}"}}}\n')
    return "".join(lines)


def _quoted(text: str | None) -> str:
    return orjson.dumps(text).decode()


class _Table:
    """results.csv and results.parquet, a page at a time, in segments of one schema each."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._segments: list[tuple[Path, Path, pa.Schema]] = []
        self._csv: pa_csv.CSVWriter | None = None
        self._parquet: pq.ParquetWriter | None = None

    def add(self, ok: pa.RecordBatch, started: pa.Array, finished: pa.Array, seconds: dict[str, Any]) -> None:
        worker = ok.column("worker")
        columns: dict[str, pa.Array] = {
            "id": ok.column("id"),
            "input": ok.column("input"),
            "attempts": ok.column("attempts"),
            "worker": pc.if_else(pc.equal(worker, ""), pa.scalar(None, pa.string()), worker),
            "started": started,
            "finished": finished,
        }
        if pc.any(pc.not_equal(ok.column("meta"), "")).as_py():
            columns |= {f"meta.{k}": v for k, v in _flat(ok.column("meta")).items()}
        for name, values in _flat(ok.column("result")).items():
            clash = name in RESULT_COLUMNS or name.startswith(("meta.", "seconds."))
            columns[f"result.{name}" if clash else name] = values
        columns |= {f"seconds.{k}": pa.array(v, pa.float64()) for k, v in seconds.items()}
        self._write(pa.table(columns))

    def _write(self, table: pa.Table) -> None:
        current = self._segments[-1][2] if self._segments else None
        if current is not None and current.names == table.schema.names:
            try:
                table = table.cast(current)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                current = None
        elif current is not None and set(table.schema.names) <= set(current.names):  # fewer columns: nulls
            try:
                table = _conform(table, current)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                current = None
        else:
            current = None
        if current is None:
            self._start(table.schema)
        assert self._csv is not None
        assert self._parquet is not None
        self._csv.write_table(table)
        self._parquet.write_table(table)

    def _start(self, schema: pa.Schema) -> None:
        self._finish_segment()
        number = len(self._segments)
        paths = (self.work / f"segment-{number}.csv", self.work / f"segment-{number}.parquet")
        self._csv = pa_csv.CSVWriter(str(paths[0]), schema)
        self._parquet = pq.ParquetWriter(str(paths[1]), schema)
        self._segments.append((*paths, schema))

    def _finish_segment(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()
        self._csv = self._parquet = None

    def close(self) -> None:
        self._finish_segment()
        csv_path, parquet_path = self.work / "results.csv", self.work / "results.parquet"
        if not self._segments:
            schema = pa.schema([(name, pa.string()) for name in RESULT_COLUMNS])
            pa_csv.write_csv(schema.empty_table(), str(csv_path))
            pq.write_table(schema.empty_table(), str(parquet_path))
        elif len(self._segments) == 1:
            os.replace(self._segments[0][0], csv_path)
            os.replace(self._segments[0][1], parquet_path)
        else:
            _join(self._segments, csv_path, parquet_path)

    def abandon(self) -> None:
        self._finish_segment()


def _flat(texts: pa.Array) -> dict[str, pa.Array]:
    """JSON objects, one per row ('' for none), as flat columns (nested objects dotted, lists as
    JSON text)."""
    table = json_table(texts)
    if table is None:  # values of mixed types: the slow, sure way
        return _flat_slowly([text or "{}" for text in texts.to_pylist()])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return {name: _plain(table.column(name).combine_chunks()) for name in table.column_names}


def _flat_slowly(texts: list[str]) -> dict[str, pa.Array]:
    rows = [flatten(orjson.loads(text)) for text in texts]
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = _as_json(values)
    return columns


def _plain(column: pa.Array) -> pa.Array:
    """A column a CSV file can hold: lists (and anything nested left) become JSON text."""
    if pa.types.is_list(column.type) or pa.types.is_struct(column.type) or pa.types.is_large_list(column.type):
        return _as_json(column.to_pylist())
    return column


def _as_json(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with the schema's columns, in its order, missing ones null, types cast."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _join(segments: list[tuple[Path, Path, pa.Schema]], csv_path: Path, parquet_path: Path) -> None:
    """One table from segments of different schemas: every column of every segment, each of one
    type (JSON text where segments disagree)."""
    fields: dict[str, pa.DataType] = {}
    for _, _, schema in segments:
        for f in schema:
            known = fields.get(f.name)
            if known is None or pa.types.is_null(known):
                fields[f.name] = f.type
            elif not pa.types.is_null(f.type) and known != f.type:
                fields[f.name] = pa.float64() if _numbers(known, f.type) else pa.string()
    schema = pa.schema(list(fields.items()))
    with pa_csv.CSVWriter(str(csv_path), schema) as table_csv, pq.ParquetWriter(str(parquet_path), schema) as table_pq:
        for _, parquet, _ in segments:
            for batch in pq.ParquetFile(str(parquet)).iter_batches():
                table = _conform_loosely(pa.Table.from_batches([batch]), schema)
                table_csv.write_table(table)
                table_pq.write_table(table)


def _numbers(*types: pa.DataType) -> bool:
    return all(bool(pa.types.is_integer(t) or pa.types.is_floating(t)) for t in types)


def _conform_loosely(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        column = table.column(f.name)
        try:
            columns.append(column.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            columns.append(_as_json(column.to_pylist()))
    return pa.Table.from_arrays(columns, schema=schema)


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
    return orjson.dumps(value).decode() if isinstance(value, list | dict) else value
