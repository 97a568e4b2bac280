"""Diabetes risk from the seven Pima measurements, served online with onnxruntime.

An input is one person's row: ``meta`` in a predict request (``{"meta": {"npreg": 2, "glu": 120,
...}}``), or a JSON file or text holding the same object (``shoal predict diabetes row.json``,
or a job over a folder of them). Each answer is ``{"diabetes_probability", "label", "model"}``.
A batch of rows is one ONNX call; a row that lacks a feature or holds a non-number fails alone,
naming what is wrong, and the rest of its batch goes on. The model file is made by train.py and
is part of the version (``[project] include`` in shoal.toml): retraining makes a new version,
which the server takes over without dropping a request.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import shoal

pipeline = shoal.Pipeline("diabetes")

MODEL = Path(__file__).resolve().parent / "model.onnx"
FEATURES = ("npreg", "glu", "bp", "skin", "bmi", "ped", "age")  #: the model's input columns, in order


@pipeline.stage(batch_size=64)
class Predict:
    """One ONNX call per batch; the session is created once per replica, in setup()."""

    def setup(self) -> None:
        import numpy as np
        import onnxruntime as ort

        if not MODEL.is_file():
            raise FileNotFoundError(f"{MODEL} is missing: run `python {MODEL.parent / 'train.py'}` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a few KB of weights: threads cost more than they save
        options.inter_op_num_threads = 1
        self.np = np
        self.session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_modelmeta().custom_metadata_map.get("model", MODEL.name)

    def process(self, items: list[shoal.Item]) -> list[Any]:
        answers: list[Any] = [None] * len(items)
        rows: list[list[float]] = []
        places: list[int] = []
        for n, item in enumerate(items):
            try:
                rows.append(features(row_of(item)))
                places.append(n)
            except shoal.ItemError as exc:
                answers[n] = exc  # fails this row only
        if rows:
            labels, probabilities = self.session.run(None, {"features": self.np.asarray(rows, dtype=self.np.float32)})
            for n, label, p in zip(places, labels, probabilities[:, 1], strict=True):
                answers[n] = {
                    "diabetes_probability": round(float(p), 6),
                    "label": "Yes" if int(label) == 1 else "No",
                    "model": self.name,
                }
        return answers


def row_of(item: shoal.Item) -> dict[str, Any]:
    """The row an input carries: its meta, or the JSON object in its file or text."""
    if item.uri is None:
        return dict(item.meta or {})
    try:
        row = json.loads(item.read_text())
    except ValueError as exc:
        raise shoal.ItemError(f"{item.input}: not a JSON object of the Pima features: {exc}", retry=False) from None
    if not isinstance(row, dict):
        raise shoal.ItemError(f"{item.input}: expected a JSON object of the Pima features", retry=False)
    return {**(item.meta or {}), **row}


def features(row: dict[str, Any]) -> list[float]:
    """The seven features of ``row`` in the model's order; extra fields (the true ``type``) are
    ignored, a missing or non-numeric one fails the input with its name."""
    missing = [name for name in FEATURES if row.get(name) is None]
    if missing:
        raise shoal.ItemError(
            f"the row lacks {', '.join(missing)}: send all of {', '.join(FEATURES)} as numbers", retry=False
        )
    values = []
    for name in FEATURES:
        value = row[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise shoal.ItemError(f"{name} is {value!r}: expected a finite number", retry=False)
        values.append(number)
    return values
