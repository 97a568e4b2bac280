"""The request log (``[serve] log_requests = true``): what each version answered, kept in the ledger.

Each answered input becomes a row: its pipeline and version, when, how long the request took,
the outcome and result, and the input itself (its fields, and its file: a file sent with the
request is kept by content under ``<data>/serving/<pipeline>/inputs/<sha256>``, so the same
input sent twice is kept once). Rows are written by a thread in batches, off the request's path.
`shoal models replay` runs what one version answered through another and compares.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, select

from shoal.store import Ledger
from shoal.store.schema import predictions

log = logging.getLogger(__name__)
FLUSH_S = 0.5


class PredictionLog:
    """A background writer of answered inputs into the ledger's ``predictions`` table."""

    def __init__(self, ledger: Ledger, data_root: Path) -> None:
        self.ledger = ledger
        self.data_root = data_root
        self._rows: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="shoal-prediction-log", daemon=True)
        self._thread.start()

    def record(
        self,
        pipeline: str,
        inputs: list[dict[str, Any]],
        outputs: list[dict[str, Any]],
        latency_s: float,
        uploaded: Path | None,
    ) -> None:
        """Queue one request's inputs and answers; files under ``uploaded`` (the request's own,
        removed after it; None where it stored none) are kept by content first."""
        now = time.time()
        for given, output in zip(inputs, outputs, strict=True):
            kept = {k: given[k] for k in ("meta", "uri") if given.get(k) is not None}
            uri = given.get("uri")
            if uri is not None and uploaded is not None and Path(uri).is_relative_to(uploaded):
                kept["uri"] = str(self._keep(pipeline, Path(uri)))
            self._rows.put(
                {
                    "pipeline": pipeline,
                    "version": output["version"],
                    "at": now,
                    "latency_ms": latency_s * 1000,
                    "ok": bool(output["ok"]),
                    "input": orjson.dumps(kept).decode(),
                    "result": orjson.dumps(output["result"]).decode() if output["ok"] else None,
                    "error": None if output["ok"] else orjson.dumps(output["error"]).decode(),
                }
            )

    def _keep(self, pipeline: str, path: Path) -> Path:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        target = self.data_root / "serving" / pipeline / "inputs" / digest
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f".{digest}.part")
            shutil.copyfile(path, part)
            part.rename(target)
        return target

    def close(self) -> None:
        self._rows.put(None)
        self._thread.join(10)

    def _write(self) -> None:
        stopping = False
        while not stopping:
            batch: list[dict[str, Any]] = []
            deadline = time.monotonic() + FLUSH_S
            while time.monotonic() < deadline:
                try:
                    row = self._rows.get(timeout=max(deadline - time.monotonic(), 0.01))
                except queue.Empty:
                    break
                if row is None:
                    stopping = True
                    break
                batch.append(row)
            if batch:
                try:
                    with self.ledger.engine.begin() as conn:
                        conn.execute(insert(predictions), batch)
                except Exception:
                    log.exception("shoal: could not write %d answered inputs to the request log", len(batch))


def logged(ledger: Ledger, pipeline: str, version: str, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` inputs ``version`` answered, oldest first."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(predictions)
            .where(predictions.c.pipeline == pipeline, predictions.c.version == version)
            .order_by(predictions.c.id.desc())
            .limit(limit)
        ).mappings()
        return [dict(row) for row in reversed(list(rows))]
