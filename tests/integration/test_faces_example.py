"""The faces example end to end: generated images in, face boxes and annotated images out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest

import shoal
from tests.helpers import read_errors, read_results

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faces"


def _make_data(count: int, out: Path) -> list[Path]:
    spec = importlib.util.spec_from_file_location("faces_make_data", EXAMPLE / "make_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files: list[Path] = module.make(count, out)
    return files


def test_faces_example_finds_faces_and_writes_annotated_images(home: Path) -> None:
    files = _make_data(45, home / "images")
    assert len(files) == 45
    assert any(not f.name.isascii() for f in files)  # names with non-ASCII characters
    assert any(" " in f.name for f in files)

    result = shoal.run(EXAMPLE, [str(home / "images")], workers=2)

    assert result.counts == {"pending": 0, "succeeded": 41, "failed": 4, "cancelled": 0}
    for record in read_results(result.out):
        name = Path(record["input"]).name
        faces = record["result"]["faces"]
        assert faces == len(record["result"]["boxes"])
        if name.startswith("astronaut"):
            assert faces >= 1, name
        if name.startswith(("no face", "lfw other")):
            assert faces == 0, name
        annotated = cv2.imread(str(result.out / "artifacts" / record["id"] / "annotated.jpg"))
        original = cv2.imread(record["input"])
        assert annotated.shape == original.shape
        assert set(record["seconds"]) == {"Detect", "annotate"}

    errors = read_errors(result.out)
    assert sorted(Path(e["input"]).name.split("-")[1] for e in errors) == ["empty", "not", "random", "truncated"]
    assert {e["error_type"] for e in errors} == {"CorruptInputError"}
    assert all(e["stage"] == "Detect" and e["attempts"] == "1" for e in errors)
    artifact_folders = {p.name for p in (result.out / "artifacts").iterdir()}
    assert artifact_folders - {".staging"} == {r["id"] for r in read_results(result.out)}
    assert not any((result.out / "artifacts" / ".staging").iterdir())
