"""Videos for the video-pose example, from the sample videos of Debian's opencv-doc package.

    python examples/video-pose/make_data.py                # data/: vtest.avi whole, and a mirrored clip
    python examples/video-pose/make_data.py --frames 80    # data/: the first 80 frames only (quick)

``vtest.avi`` (pedestrians, 795 frames of 768x576 at 10 frames/s) is linked as it is, or with
``--frames N`` cut to its first N frames (re-encoded as MJPEG). ``vtest-mirrored.mp4`` is made
here: a stretch of it flipped left to right, three quarters the size, as MPEG-4 (another
container, codec and size for the same pipeline). Install the sample videos with
``apt-get install opencv-doc``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = SAMPLES / "vtest.avi"
MIRRORED_FRAMES = 240  #: frames of the mirrored clip (at most; fewer with a smaller --frames)


def clip(source: Path, target: Path, frames: int, *, fourcc: str, scale: float = 1.0, mirror: bool = False) -> int:
    """Write the first ``frames`` frames of ``source`` to ``target``; returns how many were written."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    writer = None
    written = 0
    while written < frames:
        ok, frame = capture.read()
        if not ok:
            break
        if scale != 1.0:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if mirror:
            frame = cv2.flip(frame, 1)
        if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        writer.write(frame)
        written += 1
    capture.release()
    if writer is not None:
        writer.release()
    return written


def make(out: Path, frames: int | None = None, source: Path = VTEST) -> list[Path]:
    """Write the example's videos into ``out`` (created if needed) and return their paths."""
    if not source.is_file():
        raise SystemExit(f"{source} is missing: install Debian's sample videos with `apt-get install opencv-doc`")
    out.mkdir(parents=True, exist_ok=True)
    whole = out / "vtest.avi"
    whole.unlink(missing_ok=True)
    if frames is None:
        whole.symlink_to(source)
    else:
        clip(source, whole, frames, fourcc="MJPG")
    mirrored = out / "vtest-mirrored.mp4"
    clip(source, mirrored, min(frames or MIRRORED_FRAMES, MIRRORED_FRAMES), fourcc="mp4v", scale=0.75, mirror=True)
    return [whole, mirrored]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data", help="folder to write them to")
    parser.add_argument("--frames", type=int, default=None, help="cut vtest.avi to its first N frames")
    args = parser.parse_args()
    for path in make(args.out, args.frames):
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        print(f"{path}: {count} frames of {int(capture.get(3))}x{int(capture.get(4))}", file=sys.stdout)


if __name__ == "__main__":
    main()
