"""Helpers for tests: running the real CLI and reading a run folder."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from shoal.store import Ledger

#: a pipeline that logs every item it processes (format with log= and delay=)
SLOW = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("slow")
LOG = Path({log!r})

@pipeline.stage()
def work(item):
    time.sleep({delay})
    with LOG.open("a") as log:
        log.write(item.id + "\\n")
    return {{"pid": os.getpid()}}
"""


#: a pipeline that fails an item whose file holds the row "bad" (fix the file, and it succeeds)
PICKY = """
import shoal
pipeline = shoal.Pipeline("picky")

@pipeline.stage()
def check(item):
    text = item.read_text().strip()
    if text == "bad":
        raise ValueError(f"{item.input} holds a bad row")
    return {"text": text}
"""


def picky_job(tmp_path: Path, rows: list[str]) -> tuple[Path, Path]:
    """The picky project and a folder of one-row files (``rows``): (project, data)."""
    project, data = tmp_path / "picky", tmp_path / "data"
    project.mkdir()
    (project / "pipeline.py").write_text(PICKY)
    data.mkdir()
    for i, text in enumerate(rows):
        (data / f"row-{i}.txt").write_text(text + "\n")
    return project, data


#: setup() prints, starts a child that prints, and lasts past the moment a run's folder is known
SLOW_SETUP = """
import subprocess
import time
import shoal

pipeline = shoal.Pipeline("slow-setup")


@pipeline.stage()
class Work:
    def setup(self):
        print("setup began", flush=True)
        child = subprocess.Popen(["sh", "-c", "sleep 0.8; echo a child of setup spoke"])
        time.sleep(1.5)  # the run folder is known long before this ends
        child.wait()
        print("setup ended", flush=True)

    def process(self, item):
        print("ran", item.id, flush=True)
        return {}
"""

#: a pipeline that returns each item's text
ECHO = """
import shoal
pipeline = shoal.Pipeline("echo")

@pipeline.stage()
def echo(item):
    return {"text": item.read_text().strip()}
"""


def shoal_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `shoal` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def read_errors(out: Path) -> list[dict[str, str]]:
    with (out / "errors.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def ledger_in(home: Path) -> Ledger:
    """The default ledger of a test's shoal home."""
    return Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")


def succeeded_when(home: Path, at_least: int, deadline: float = 60) -> tuple[str, set[str]]:
    """Wait until the running job has recorded ``at_least`` successes; return them."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if (home / "shoal-runs" / "ledger.db").exists():
            ledger = ledger_in(home)
            try:
                jobs = ledger.list_jobs()
                if jobs:
                    done = {r["id"] for r in ledger.iter_items(jobs[0].id, "succeeded", columns=("id",))}
                    if len(done) >= at_least:
                        return jobs[0].id, done
            finally:
                ledger.close()
        time.sleep(0.05)
    raise AssertionError(f"the job never recorded {at_least} successes")


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)


def demo_wheel(folder: Path) -> None:
    """A one-module wheel, shoaldemo 1.0, made here: nothing is downloaded."""
    files = {
        "shoaldemo/__init__.py": b"VALUE = 42\n",
        "shoaldemo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: shoaldemo\nVersion: 1.0\n",
        "shoaldemo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {n: base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode() for n, d in files.items()}
    record = (
        "".join(f"{n},sha256={digest[n]},{len(d)}\n" for n, d in files.items()) + "shoaldemo-1.0.dist-info/RECORD,,\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "shoaldemo-1.0-py3-none-any.whl", "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("shoaldemo-1.0.dist-info/RECORD", record)
