"""The diabetes example end to end: train.py makes an ONNX model, a real server serves it, and the
answers are what onnxruntime gives on the same rows, accurate on Pima.te through the API, with a
malformed row failing alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.environments import project_environment
from tests.helpers import shoal_cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "diabetes"
#: the first rows of Pima.te, with their true outcome
ROWS = [
    {"npreg": 6, "glu": 148, "bp": 72, "skin": 35, "bmi": 33.6, "ped": 0.627, "age": 50, "type": "Yes"},
    {"npreg": 1, "glu": 85, "bp": 66, "skin": 29, "bmi": 26.6, "ped": 0.351, "age": 31, "type": "No"},
    {"npreg": 1, "glu": 89, "bp": 66, "skin": 23, "bmi": 28.1, "ped": 0.167, "age": 21, "type": "No"},
    {"npreg": 3, "glu": 78, "bp": 50, "skin": 32, "bmi": 31.0, "ped": 0.248, "age": 26, "type": "Yes"},
    {"npreg": 2, "glu": 197, "bp": 70, "skin": 45, "bmi": 30.5, "ped": 0.158, "age": 53, "type": "Yes"},
    {"npreg": 5, "glu": 166, "bp": 72, "skin": 19, "bmi": 25.8, "ped": 0.587, "age": 51, "type": "Yes"},
    {"npreg": 0, "glu": 118, "bp": 84, "skin": 47, "bmi": 45.8, "ped": 0.551, "age": 31, "type": "Yes"},
    {"npreg": 1, "glu": 103, "bp": 30, "skin": 38, "bmi": 43.3, "ped": 0.183, "age": 33, "type": "No"},
]
FEATURES = ("npreg", "glu", "bp", "skin", "bmi", "ped", "age")
DIRECT = """
import json, sys
import numpy as np, onnxruntime as ort
rows = json.load(sys.stdin)
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.asarray([[row[name] for name in sys.argv[2].split(",")] for row in rows], dtype=np.float32)
print(json.dumps([float(p) for p in session.run(None, {"features": x})[1][:, 1]]))
"""


def _python(env: Path | None, *args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run this Python with the example's installed requirements first on its path; its stdout."""
    extra = {} if env is None else {"PYTHONPATH": str(env)}
    done = subprocess.run(
        [sys.executable, *args],
        input=stdin,
        env={**os.environ, **extra},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def trained(home: Path) -> tuple[Path, Path | None]:
    """A copy of the example (never the repository's own model file) with a model trained by
    train.py; and the folder of its installed requirements (None if this Python has them)."""
    project = shutil.copytree(EXAMPLE, home / "diabetes", ignore=shutil.ignore_patterns("model.onnx", "__pycache__"))
    env = project_environment(project)  # this user's cache: installed once
    report = json.loads(_python(None, str(project / "train.py"), "--hidden", "8", cwd=home))
    assert report["model"] == "mlp-8"
    assert 1_000 < report["bytes"] < 100_000
    assert report["test_accuracy"] > 0.65
    return project, env


@pytest.mark.timeout(600)  # the first run installs onnxruntime and scikit-learn (uv: from its cache)
def test_served_answers_match_onnxruntime_and_are_accurate(
    trained: tuple[Path, Path | None], serve: Callable[..., Any], home: Path
) -> None:
    project, env = trained
    server = serve(projects=[project])
    inputs: list[dict[str, Any]] = [{"meta": row} for row in ROWS]
    inputs.insert(3, {"meta": {k: v for k, v in ROWS[0].items() if k != "glu"}})  # lacks one feature
    answer = httpx.post(f"{server.url}/api/v1/pipelines/diabetes/predict", json={"inputs": inputs}, timeout=120)
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert [o["ok"] for o in outputs] == [True] * 3 + [False] + [True] * 5
    bad = outputs.pop(3)["error"]
    assert (bad["stage"], bad["type"]) == ("Predict", "ItemError")
    assert "lacks glu" in bad["message"]

    expected = json.loads(
        _python(env, "-c", DIRECT, str(project / "model.onnx"), ",".join(FEATURES), stdin=json.dumps(ROWS))
    )
    served = [o["result"]["diabetes_probability"] for o in outputs]
    assert served == pytest.approx(expected, abs=1e-5)
    assert [o["result"]["label"] for o in outputs] == ["Yes" if p >= 0.5 else "No" for p in expected]
    assert {o["result"]["model"] for o in outputs} == {"mlp-8"}
    assert sum(o["result"]["label"] == row["type"] for o, row in zip(outputs, ROWS, strict=True)) >= 5

    evaluated = json.loads(_python(None, str(project / "evaluate.py"), "--server", server.url, cwd=home))
    assert evaluated["rows"] == 332
    assert evaluated["accuracy"] > 0.65
    assert evaluated["true_yes"] + evaluated["false_no"] == 109  # Pima.te's cases of diabetes
    assert evaluated["max_abs_diff_vs_onnxruntime"] < 1e-5
    assert len(evaluated["versions"]) == 1

    (home / "row.json").write_text(json.dumps(ROWS[4]))
    done = shoal_cli("predict", "diabetes", str(home / "row.json"), "--server", server.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["diabetes_probability"] == pytest.approx(expected[4], abs=1e-5)
