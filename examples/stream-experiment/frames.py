"""The frames fed to the detector: the opencv-doc pedestrian video when installed, else generated.

Frames are written as JPEG files of the video's full size (768x576, about 110 KB each), so an
MB/s rate is a frame rate of about 9 frames/s per MB/s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  #: Debian's opencv-doc package
WIDTH, HEIGHT = 768, 576  #: the sample's frame size; generated frames use it too
JPEG_QUALITY = 90


def make_frames(out: Path, count: int, sample: Path = SAMPLE) -> tuple[list[Path], str]:
    """``count`` JPEG frames in ``out`` and a line saying where they came from."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    images = _video_frames(sample, count) if sample.exists() else []
    if images:
        source = f"{sample} (opencv-doc), {len(images)} frames spread over the video"
    else:
        images = [_generated(k, count) for k in range(count)]
        source = f"{count} generated frames ({sample} not found: apt-get install opencv-doc for the real video)"
    files = []
    for k, image in enumerate(images):
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not encode a frame as JPEG")
        files.append(out / f"frame{k:03d}.jpg")
        files[-1].write_bytes(encoded.tobytes())
    return files, source


def _video_frames(path: Path, count: int) -> list[Any]:
    """Every n-th frame of the video, so the frames show different scenes (795 in vtest.avi)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    every = max(1, total // count)
    frames: list[Any] = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


def _generated(k: int, count: int) -> Any:
    """A street-like frame: a textured background and a few dark upright figures that move."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(k)
    ramp = np.linspace(90, 200, WIDTH, dtype=np.float32)[None, :, None]
    image = np.clip(ramp + rng.normal(0, 9, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    for figure in range(4):
        x = int((figure * 190 + k * WIDTH / max(count, 1)) % (WIDTH - 60))
        y = 150 + 90 * (figure % 3)
        cv2.ellipse(image, (x + 30, y + 20), (14, 18), 0, 0, 360, (40, 40, 50), -1)  # head
        cv2.rectangle(image, (x + 12, y + 38), (x + 48, y + 120), (60, 50, 70), -1)  # body
        cv2.rectangle(image, (x + 14, y + 120), (x + 28, y + 190), (50, 50, 60), -1)  # legs
        cv2.rectangle(image, (x + 32, y + 120), (x + 46, y + 190), (50, 50, 60), -1)
    return image
