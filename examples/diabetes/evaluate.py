"""Accuracy of the served model on Pima.te, measured through the predict API.

    shoal serve --project examples/diabetes &
    python examples/diabetes/evaluate.py                       # http://127.0.0.1:8000
    python examples/diabetes/evaluate.py --server URL --token T --batch 16
    python examples/diabetes/evaluate.py --write-csv pima-te.csv    # rows for `shoal run`

Sends the 332 rows of ``Pima.te`` (never seen in training) as ``meta`` rows, ``--batch`` rows a
request, and prints one JSON line: accuracy, the confusion counts, the versions and models that
answered, the slowest request, and how far the served probabilities are from onnxruntime run
here on ``--model`` (the same file, unless the server serves another): a served answer should
be the same number.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from train import FEATURES, HERE, pima, requirements_on_path


def predict(server: str, rows: list[dict[str, float]], token: str | None = None) -> dict[str, Any]:
    """POST the rows to the diabetes pipeline; the answer's JSON."""
    body = json.dumps({"inputs": [{"meta": row} for row in rows]}).encode()
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(f"{server}/api/v1/pipelines/diabetes/predict", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"the server answered {exc.code}: {exc.read().decode(errors='replace')[:500]}") from None
    return answer


def direct(model: Path, x: Any) -> Any:
    """P(diabetes) of each row by onnxruntime in this process, on the same file."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": x})[1][:, 1]


def evaluate(server: str, split: str, batch: int, model: Path, token: str | None = None) -> dict[str, Any]:
    x, truth = pima(split)
    rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in x]
    outputs: list[dict[str, Any]] = []
    slowest = 0.0
    for start in range(0, len(rows), batch):
        began = time.monotonic()
        outputs += predict(server, rows[start : start + batch], token)["outputs"]
        slowest = max(slowest, time.monotonic() - began)
    failed = [o["error"] for o in outputs if not o["ok"]]
    if failed:
        raise SystemExit(f"{len(failed)} rows failed, the first: {failed[0]}")
    served = [o["result"]["diabetes_probability"] for o in outputs]
    labels = [o["result"]["label"] == "Yes" for o in outputs]
    hits = [bool(label) == bool(t) for label, t in zip(labels, truth, strict=True)]
    pairs = list(zip(labels, truth, strict=True))
    summary: dict[str, Any] = {
        "split": split,
        "rows": len(rows),
        "accuracy": round(sum(hits) / len(hits), 4),
        "true_yes": sum(1 for label, t in pairs if label and t),
        "false_yes": sum(1 for label, t in pairs if label and not t),
        "true_no": sum(1 for label, t in pairs if not label and not t),
        "false_no": sum(1 for label, t in pairs if not label and t),
        "versions": sorted({o["version"] for o in outputs}),
        "models": sorted({o["result"]["model"] for o in outputs}),
        "slowest_request_ms": round(slowest * 1000, 1),
    }
    if model.is_file():
        here = direct(model, x)
        summary["max_abs_diff_vs_onnxruntime"] = float(
            max(abs(a - float(b)) for a, b in zip(served, here, strict=True))
        )
    return summary


def write_csv(split: str, path: Path) -> None:
    """The split's rows, with their true ``type``, one per line: inputs of a batch job."""
    x, truth = pima(split)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "type"])
        for row, t in zip(x.tolist(), truth, strict=True):
            writer.writerow([f"{v:g}" for v in row] + ["Yes" if t else "No"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--token", help="an API token, for a server that wants one")
    parser.add_argument("--split", default="Pima.te", choices=["Pima.te", "Pima.tr"])
    parser.add_argument("--batch", type=int, default=32, help="rows per request")
    parser.add_argument("--model", type=Path, default=HERE / "model.onnx", help="compare with this file, run here")
    parser.add_argument(
        "--write-csv", type=Path, metavar="PATH", help="only write the split's rows as CSV (for shoal run)"
    )
    args = parser.parse_args()
    requirements_on_path()
    if args.write_csv:
        write_csv(args.split, args.write_csv)
        return
    print(json.dumps(evaluate(args.server.rstrip("/"), args.split, args.batch, args.model, args.token)))


if __name__ == "__main__":
    main()
