"""People and their poses in videos: OpenCV's HOG people detector, then MediaPipe's pose model on
each person found, a labelled copy of the video (WebM, plays in the browser), a keypoints table
and a plot of where people walked.

The input is split into segments of frames (``inputs = ["data#segment=100"]`` in shoal.toml), so
one long video runs on every worker at once; each segment reads only its own frames
(``item.read_video()`` seeks to them). Per segment, in ``artifacts/<segment-id>/``: ``first.jpg``
(its first frame), ``keypoints.csv``, ``labelled.webm``. Once every segment has run, ``join``
puts each video back together in ``artifacts/<video-id>/``: ``labelled.webm`` (the segments'
WebM files concatenated, not encoded again), ``keypoints.csv`` (every frame in order, people
followed from frame to frame as tracks), ``trajectory.png`` and ``summary.json``.

MediaPipe (``requirements.txt``: mediapipe 0.10.21, numpy<2, protobuf<5) is installed by shoal
into the project's own environment for the workers, so it is imported inside the stages only;
``join`` runs in the process that runs the job and needs no more than shoal does.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import shoal

pipeline = shoal.Pipeline("video-pose")
log = logging.getLogger("shoal.examples.video_pose")

MAX_PEOPLE = 6  #: people per frame whose pose is estimated (the HOG detector's most confident)
MIN_SCORE = 0.3  #: HOG scores below this are not people
POSE_HEIGHT = 256  #: pixels: a person's crop is enlarged to at least this height for MediaPipe
PROGRESS_EVERY = 25  #: frames between progress lines in the worker's log


# --- per segment: detection, pose, labelled video ----------------------------------------------------
@pipeline.stage()
class Detect:
    """Find people in every frame of the segment with OpenCV's HOG people detector."""

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # one core per worker: the segments run side by side
        self.cv2 = cv2
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def process(self, item: shoal.Item) -> dict[str, Any]:
        boxes: dict[int, list[list[float]]] = {}
        with item.read_video() as video:
            for index, frame in video:
                if not boxes:
                    item.write_artifact("first.jpg", self.cv2.imencode(".jpg", frame)[1].tobytes())
                boxes[index] = self.people(frame)
                if len(boxes) % PROGRESS_EVERY == 0:
                    print(f"{item.input}: detect, {len(boxes)} frames", flush=True)
        item.state["boxes"] = boxes
        item.state["fps"] = video.fps or item.meta.get("fps") or 25.0
        return {
            "first_frame": min(boxes, default=None),
            "frames": len(boxes),
            "detections": sum(len(found) for found in boxes.values()),
        }

    def people(self, frame: Any) -> list[list[float]]:
        """[x, y, w, h, score] of the most confident people, overlapping boxes merged."""
        found, scores = self.hog.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.1)
        if len(found) == 0:
            return []
        scores = [float(s) for s in scores.ravel()]
        keep = self.cv2.dnn.NMSBoxes([list(map(int, b)) for b in found], scores, MIN_SCORE, 0.4)
        ranked = sorted((int(i) for i in keep), key=lambda i: -scores[i])[:MAX_PEOPLE]
        return [[*map(int, found[i]), round(scores[i], 3)] for i in ranked]


@pipeline.stage()
class Pose:
    """MediaPipe's pose model on each person found: 33 keypoints, in the frame's pixels."""

    def setup(self) -> None:
        import cv2
        import mediapipe as mp

        self.cv2 = cv2
        self.model = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)
        self.names = [landmark.name.lower() for landmark in mp.solutions.pose.PoseLandmark]

    def teardown(self) -> None:
        self.model.close()

    def process(self, item: shoal.Item) -> dict[str, Any]:
        boxes: dict[int, list[list[float]]] = item.state["boxes"]
        poses: dict[int, list[list[float] | None]] = {}
        with item.read_video() as video:
            for index, frame in video:
                poses[index] = [self.pose(frame, box) for box in boxes.get(index, [])]
                if len(poses) % PROGRESS_EVERY == 0:
                    print(f"{item.input}: pose, {len(poses)} frames", flush=True)
        item.state["poses"] = poses
        item.write_artifact("keypoints.csv", self.table(boxes, poses, item.state["fps"]))
        return {"poses": sum(p is not None for found in poses.values() for p in found)}

    def pose(self, frame: Any, box: list[float]) -> list[float] | None:
        """[x, y, visibility] * 33 of one person, or None when MediaPipe finds no pose in the box."""
        x, y, w, h = (int(v) for v in box[:4])
        x0, y0 = max(0, x), max(0, y)
        crop = frame[y0 : y + h, x0 : x + w]
        if crop.size == 0:
            return None
        zoom = max(1.0, POSE_HEIGHT / crop.shape[0])
        if zoom > 1.0:
            crop = self.cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=self.cv2.INTER_LINEAR)
        found = self.model.process(self.cv2.cvtColor(crop, self.cv2.COLOR_BGR2RGB)).pose_landmarks
        if found is None:
            return None
        height, width = crop.shape[:2]
        points = []
        for mark in found.landmark:  # normalised to the crop: back to the frame's pixels
            points += [round(x0 + mark.x * width / zoom, 1), round(y0 + mark.y * height / zoom, 1)]
            points.append(round(mark.visibility, 3))
        return points

    def table(self, boxes: dict[int, list[list[float]]], poses: dict[int, list[list[float] | None]], fps: float) -> str:
        """keypoints.csv: a row per person per frame, and one with empty cells for a frame without people."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["frame", "time_s", "person", "x", "y", "w", "h", "score", "pose", *self.columns()])
        for index in sorted(poses):
            time_s = round(index / fps, 3)
            if not boxes.get(index):
                writer.writerow([index, time_s, *[""] * 7, *[""] * (3 * len(self.names))])  # nobody in it
            for person, (box, points) in enumerate(zip(boxes.get(index, []), poses[index], strict=True)):
                keypoints = points if points is not None else [""] * (3 * len(self.names))
                writer.writerow([index, time_s, person, *box, int(points is not None), *keypoints])
        return buffer.getvalue()

    def columns(self) -> list[str]:
        return [f"{name}_{axis}" for name in self.names for axis in ("x", "y", "v")]


@pipeline.stage()
class Label:
    """A copy of the segment with the people's boxes and skeletons drawn, as WebM (VP8)."""

    def setup(self) -> None:
        import cv2
        import mediapipe as mp

        self.cv2 = cv2
        self.bones = [tuple(pair) for pair in mp.solutions.pose.POSE_CONNECTIONS]

    def process(self, item: shoal.Item) -> dict[str, Any]:
        boxes, poses = item.state["boxes"], item.state["poses"]
        path = item.artifact_path("labelled.webm")
        writer = None
        with item.read_video() as video:
            for index, frame in video:
                if writer is None:
                    fourcc = self.cv2.VideoWriter_fourcc(*"VP80")
                    writer = self.cv2.VideoWriter(str(path), fourcc, item.state["fps"], (video.width, video.height))
                    if not writer.isOpened():
                        raise RuntimeError("OpenCV cannot write WebM (VP8) here: it needs a build with FFmpeg")
                self.draw(frame, index, boxes.get(index, []), poses.get(index, []))
                writer.write(frame)
        if writer is not None:
            writer.release()
        return {"labelled": "labelled.webm"}

    def draw(self, frame: Any, index: int, boxes: list[list[float]], poses: list[list[float] | None]) -> None:
        cv2 = self.cv2
        for box, points in zip(boxes, poses, strict=True):
            x, y, w, h = (int(v) for v in box[:4])
            colour = (40, 220, 40) if points is not None else (0, 160, 255)
            cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
            if points is None:
                continue
            joints = [(int(points[3 * k]), int(points[3 * k + 1]), points[3 * k + 2]) for k in range(len(points) // 3)]
            for a, b in self.bones:
                if joints[a][2] > 0.5 and joints[b][2] > 0.5:
                    cv2.line(frame, joints[a][:2], joints[b][:2], (255, 255, 255), 2)
            for jx, jy, seen in joints:
                if seen > 0.5:
                    cv2.circle(frame, (jx, jy), 3, (0, 0, 255), -1)
        cv2.putText(frame, f"frame {index}", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)


# --- once all segments ran: each video joined ----------------------------------------------------------
@pipeline.finish
def join(out: Path, items: Iterator[dict[str, Any]]) -> None:
    """Put each video's segments back together, in frame order, in artifacts/<video-id>/."""
    for video, records in itertools.groupby(items, key=lambda record: (record["meta"] or {}).get("video")):
        if video is not None:
            join_video(out / "artifacts", video, list(records))  # a video's segment records: small dicts


def join_video(artifacts: Path, video: str, parts: list[dict[str, Any]]) -> None:
    """One video's outputs from its segments' artifacts, unless a segment failed."""
    from shoal.video import join_webm

    expected = parts[0]["meta"]["segments"]
    failed = [part["input"] for part in parts if part["status"] != "succeeded"]
    if failed or len(parts) != expected:
        log.warning("%s: not joined, %d of %d segments failed: %s", video, len(failed), expected, ", ".join(failed))
        return
    folder = artifacts / video
    folder.mkdir(parents=True, exist_ok=True)
    segment_files = [artifacts / part["id"] for part in parts]
    seconds = join_webm([files / "labelled.webm" for files in segment_files], folder / "labelled.webm")
    tracks = Tracks()
    frames = join_keypoints([files / "keypoints.csv" for files in segment_files], folder / "keypoints.csv", tracks)
    name = Path(parts[0]["uri"]).name
    plot(tracks, segment_files[0] / "first.jpg", folder / "trajectory.png", name)
    spent: dict[str, float] = {}
    for part in parts:
        for stage, stage_seconds in (part["seconds"] or {}).items():
            spent[stage] = round(spent.get(stage, 0.0) + stage_seconds, 3)
    summary = {
        "video": parts[0]["uri"],
        "frames": frames,
        "fps": parts[0]["meta"]["fps"],
        "duration_s": round(seconds, 3),
        "segments": len(parts),
        "detections": sum(part["result"]["detections"] for part in parts),
        "poses": sum(part["result"]["poses"] for part in parts),
        "tracks": len(tracks.long()),
        "stage_seconds": spent,  #: summed over segments: the work, not the wall time
        "frames_per_s_of_work": round(frames / max(sum(spent.values()), 1e-9), 2),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def join_keypoints(parts: list[Path], target: Path, tracks: Tracks) -> int:
    """The segments' tables as one, a track column added; checks that frames follow on with no
    gap or repeat at segment boundaries. Returns the number of frames."""
    frames, expected = 0, None
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for number, path in enumerate(parts):
            with path.open(newline="") as source:
                reader = csv.reader(source)
                header = next(reader)
                if number == 0:
                    writer.writerow([*header[:2], "track", *header[2:]])
                for frame, group in itertools.groupby(reader, key=lambda row: int(row[0])):
                    if expected is not None and frame != expected:
                        raise ValueError(f"{path}: frame {frame} follows frame {expected - 1}: a gap or a repeat")
                    frames, expected, rows = frames + 1, frame + 1, list(group)
                    ids = iter(tracks.follow(frame, [[float(v) for v in row[3:7]] for row in rows if row[2]]))
                    for row in rows:
                        writer.writerow([*row[:2], next(ids) if row[2] else "", *row[2:]])
    return frames


class Tracks:
    """People followed from frame to frame: each box joins the nearest track seen in the last few
    frames whose feet are within half a body height, else starts a track of its own."""

    GAP = 5  #: frames a track may go unseen and still continue
    LONG = 10  #: frames a track needs to be drawn

    def __init__(self) -> None:
        self.points: dict[int, list[tuple[int, float, float]]] = {}  #: track -> (frame, feet x, feet y)
        self.recent: dict[int, tuple[int, float, float, float]] = {}  #: track -> (frame, feet x, y, height)

    def follow(self, frame: int, boxes: list[list[float]]) -> list[int]:
        """Track numbers for this frame's [x, y, w, h] boxes, in their order."""
        self.recent = {t: seen for t, seen in self.recent.items() if frame - seen[0] <= self.GAP}
        feet = [(x + w / 2, y + h, h) for x, y, w, h in boxes]
        pairs = sorted(
            (math.dist((fx, fy), (tx, ty)), i, t)
            for i, (fx, fy, h) in enumerate(feet)
            for t, (_, tx, ty, th) in self.recent.items()
            if math.dist((fx, fy), (tx, ty)) < 0.5 * max(h, th)
        )
        chosen: dict[int, int] = {}
        for _, i, t in pairs:
            if i not in chosen and t not in chosen.values():
                chosen[i] = t
        ids = []
        for i, (fx, fy, h) in enumerate(feet):
            track = chosen.get(i, len(self.points))
            self.points.setdefault(track, []).append((frame, fx, fy))
            self.recent[track] = (frame, fx, fy, h)
            ids.append(track)
        return ids

    def long(self) -> dict[int, list[tuple[int, float, float]]]:
        return {t: p for t, p in self.points.items() if len(p) >= self.LONG}


def plot(tracks: Tracks, background: Path, target: Path, title: str) -> None:
    """Where each person tracked for a while walked (their feet), over the video's first frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.68, 5.76), dpi=100)
    if background.is_file():
        image = plt.imread(background)
        grey = image @ [0.299, 0.587, 0.114] if image.ndim == 3 else image  # the tracks stand out in colour
        axes.imshow(grey, cmap="gray", alpha=0.6)
    long = tracks.long()
    colours = plt.get_cmap("tab20")
    for number, (_, points) in enumerate(sorted(long.items())):
        xs, ys = _smooth([p[1] for p in points]), _smooth([p[2] for p in points])
        axes.plot(xs, ys, "-", color=colours(number % 20), linewidth=2)
        axes.plot(xs[:1], ys[:1], "o", color=colours(number % 20), markersize=5)
    frames = sum(len(p) for p in long.values())
    axes.set_title(f"{title}: {len(long)} tracks ({frames} positions of feet, dots where each starts)")
    axes.set_axis_off()
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)


def _smooth(values: list[float], width: int = 5) -> list[float]:
    """A running mean: HOG's boxes jitter by a few pixels from frame to frame."""
    windows = [values[max(0, i - width // 2) : i + width // 2 + 1] for i in range(len(values))]
    return [sum(window) / len(window) for window in windows]
