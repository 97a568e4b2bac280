"""The video-pose example end to end, with the real `shoal` command: two videos (a clip of
opencv-doc's vtest.avi and a mirrored, smaller MPEG-4 copy made from it) split into segments of
15 frames that run on two workers, then joined: a WebM with every frame in order, a keypoints
table with each frame once and in order across segment boundaries, people and poses found where
the people are, and a trajectory plot.

MediaPipe is installed by shoal into the example's own environment on the first run (numpy<2,
protobuf<5), which can take minutes without a warm package cache."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers import read_results, shoal_cli
from tests.unit.test_video import _decoded

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "video-pose"
FRAMES = 40  #: of each video
SEGMENT = 15  #: frames per item: 3 segments a video (15, 15, 10)
PNG = b"\x89PNG\r\n\x1a\n"


def _make_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("video_pose_make_data", EXAMPLE / "make_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.timeout(900)
def test_videos_split_into_segments_come_back_joined_in_order_with_people_and_poses(home: Path) -> None:
    make_data = _make_data()
    if not make_data.VTEST.is_file():
        pytest.skip("needs Debian's sample videos: apt-get install opencv-doc")
    make_data.make(home / "videos", frames=FRAMES)
    out = home / "out"

    done = shoal_cli(
        "run", str(EXAMPLE), "--input", f"{home / 'videos'}#segment={SEGMENT}", "--workers", "2", "--out", str(out),
        cwd=home, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    results = read_results(out)
    by_video = {
        video: sorted(records, key=lambda r: r["id"])
        for video, records in itertools.groupby(sorted(results, key=lambda r: r["id"]), lambda r: r["id"].split("@")[0])
    }
    assert len(by_video) == 2
    for video, segments in by_video.items():
        assert [s["id"] for s in segments] == [f"{video}@{start:06d}" for start in (0, 15, 30)]
        assert [s["result"]["frames"] for s in segments] == [15, 15, 10]
        _check_joined(out / "artifacts", video, segments)

    vtest = next(video for video in by_video if video.startswith("vtest.avi"))
    rows = _rows(out / "artifacts" / vtest / "keypoints.csv")
    with_people = {row["frame"] for row in rows if row["person"]}
    assert len(with_people) >= FRAMES * 0.6  # pedestrians are in most frames
    posed = [row for row in rows if row["pose"] == "1"]
    assert len(posed) >= len(with_people)
    inside = [_hips_in_box(row) for row in posed]
    assert sum(inside) >= 0.9 * len(inside)  # the keypoints are on the person found
    summary = json.loads((out / "artifacts" / vtest / "summary.json").read_text())
    assert (summary["frames"], summary["segments"], summary["fps"]) == (FRAMES, 3, 10.0)
    assert summary["tracks"] >= 2
    assert summary["poses"] == len(posed)


def _check_joined(artifacts: Path, video: str, segments: list[dict[str, Any]]) -> None:
    """The joined WebM is the segments' frames, all and in order; the table has each frame once."""
    joined = _decoded(artifacts / video / "labelled.webm")
    parts = [frame for s in segments for frame in _decoded(artifacts / s["id"] / "labelled.webm")]
    assert len(joined) == len(parts) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(joined, parts, strict=True))

    rows = _rows(artifacts / video / "keypoints.csv")
    frames = [int(row["frame"]) for row in rows]
    assert [frame for frame, _ in itertools.groupby(frames)] == list(range(FRAMES))  # in order, no gap, no repeat
    people = [(row["frame"], row["person"]) for row in rows if row["person"]]
    assert len(people) == len(set(people))
    assert all(row["track"] for row in rows if row["person"])
    assert {row["time_s"] for row in rows if row["frame"] == "15"} == {"1.5"}  # the second segment's first frame

    plot = (artifacts / video / "trajectory.png").read_bytes()
    assert plot.startswith(PNG)
    image = cv2.imdecode(np.frombuffer(plot, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (576, 768, 3)


def _hips_in_box(row: dict[str, str]) -> bool:
    x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
    hips = [(float(row[f"{side}_hip_x"]), float(row[f"{side}_hip_y"])) for side in ("left", "right")]
    return all(x - 0.25 * w <= hx <= x + 1.25 * w and y <= hy <= y + h for hx, hy in hips)
