"""`shoal models replay`: what one version answered online, run through another, and compared.

The inputs come from the request log (see serving.log): each row's fields and its kept file go
into a JSONL file, which the other version's kept folder runs over like any job, on this
machine, in a throwaway shoal home (the user's jobs list stays as it was). Answers are compared
input by input: the same outcome and the same result agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal import registry
from shoal.errors import ConfigError, ShoalError
from shoal.serving.log import logged
from shoal.store import Ledger


@dataclass
class Replay:
    version: str
    against: str
    total: int = 0
    agreed: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)


def replay_log(
    ledger: Ledger, pipeline: str, version: str, against: str, *, limit: int = 1000, workers: int | None = None
) -> Replay:
    before = registry.get_version(ledger, pipeline, version)
    after = registry.get_version(ledger, pipeline, against)
    rows = logged(ledger, pipeline, before.version, limit)
    if not rows:
        raise ConfigError(
            f"no logged answers of {pipeline} {before.version}: set [serve] log_requests = true and serve it first"
        )
    found = Replay(before.version, after.version, total=len(rows))
    with tempfile.TemporaryDirectory(prefix="shoal-replay-") as tmp:
        folder = Path(tmp)
        inputs = folder / "inputs.jsonl"
        with inputs.open("w", encoding="utf-8") as out:
            for row in rows:
                given = json.loads(row["input"])
                line = {**(given.get("meta") or {}), "id": f"p{row['id']}"}
                if given.get("uri"):
                    line["uri"] = given["uri"]
                out.write(json.dumps(line) + "\n")
        command = [
            sys.executable,
            "-m",
            "shoal",
            "run",
            after.folder,
            "--input",
            str(inputs),
            "--out",
            str(folder / "out"),
        ]
        command += ["--retries", "0"] + (["--workers", str(workers)] if workers else [])
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "SHOAL_HOME": str(folder / "home")}
        )
        if done.returncode not in (0, 1):
            raise ShoalError(f"the replay with {after.version} did not run: {done.stderr.strip()[-2000:]}")
        answers = _answers(folder / "out")
    for row in rows:
        then = json.loads(row["result"]) if row["ok"] else {"error": json.loads(row["error"])["type"]}
        now = answers.get(f"p{row['id']}", {"error": "not run"})
        if then == now:
            found.agreed += 1
        else:
            found.differences.append({"input": row["id"], "before": then, "after": now})
    return found


def _answers(out: Path) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    with (out / "results.jsonl").open(encoding="utf-8") as results:
        for line in results:
            row = json.loads(line)
            answers[row["id"]] = row["result"]
    errors = out / "errors.csv"
    if errors.exists():
        import csv

        with errors.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                answers[row["id"]] = {"error": row["error_type"]}
    return answers
