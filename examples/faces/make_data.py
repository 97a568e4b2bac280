"""Generate a varied set of test images for the faces example, from photos bundled in scikit-image.

    python examples/faces/make_data.py --count 200 --out examples/faces/data

Variants of `astronaut` (scaled, flipped, cropped, noisy, darker, rotated), faces and non-faces
from `lfw_subset`, photos without a face (a cat, coffee, a rocket), file names with spaces and
non-ASCII characters, and a few deliberately broken files (truncated, empty, not an image), so
a run shows how shoal reports failures. Output is deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from skimage import data

Image = np.ndarray
BROKEN = 4  #: corrupt files in a set of 40 or more


def _bgr(rgb: Image) -> Image:
    if rgb.ndim == 2:
        return cv2.cvtColor(rgb, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _variants(rng: np.random.Generator) -> list[tuple[str, Callable[[], Image]]]:
    astronaut = _bgr(data.astronaut())
    lfw = data.lfw_subset()  # 200 grey 25x25 crops: 100 faces, then 100 non-faces
    no_face = {"cat": _bgr(data.chelsea()), "coffee": _bgr(data.coffee()), "rocket": _bgr(data.rocket())}

    def scaled() -> Image:
        f = rng.uniform(0.4, 1.4)
        return cv2.resize(astronaut, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)

    def flipped() -> Image:
        return cv2.flip(scaled(), 1)

    def cropped() -> Image:
        x, y = int(rng.integers(0, 120)), int(rng.integers(0, 40))
        return astronaut[y : y + 360, x : x + 360].copy()

    def noisy() -> Image:
        noise = rng.normal(0, rng.uniform(5, 25), astronaut.shape)
        return np.clip(astronaut + noise, 0, 255).astype(np.uint8)

    def darker() -> Image:
        return (astronaut * rng.uniform(0.4, 0.8)).astype(np.uint8)

    def rotated() -> Image:
        turn = cv2.getRotationMatrix2D((256, 256), float(rng.uniform(-20, 20)), 1.0)
        return cv2.warpAffine(astronaut, turn, (512, 512))

    def lfw_face() -> Image:
        face = (lfw[int(rng.integers(0, 100))] * 255).astype(np.uint8)
        return _bgr(cv2.resize(face, (150, 150), interpolation=cv2.INTER_CUBIC))

    def lfw_other() -> Image:
        crop = (lfw[int(rng.integers(100, 200))] * 255).astype(np.uint8)
        return _bgr(cv2.resize(crop, (150, 150), interpolation=cv2.INTER_CUBIC))

    def without_face() -> Image:
        name = list(no_face)[int(rng.integers(0, len(no_face)))]
        return no_face[name]

    return [
        ("astronaut scaled", scaled),
        ("astronaut flipped", flipped),
        ("astronaut cropped", cropped),
        ("astronaut noisy", noisy),
        ("astronaute sombre", darker),
        ("astronaut rotated", rotated),
        ("lfw face", lfw_face),
        ("lfw other", lfw_other),
        ("no face", without_face),
    ]


def _broken(out: Path, index: int, good_jpeg: bytes) -> Path:
    kind = index % BROKEN
    if kind == 0:
        path, payload = out / f"broken-truncated-{index:04d}.jpg", good_jpeg[: len(good_jpeg) // 10]
    elif kind == 1:
        path, payload = out / f"broken-empty-{index:04d}.png", b""
    elif kind == 2:
        path, payload = out / f"broken-not-an-image-{index:04d}.jpg", b"this is a text file, not a JPEG\n"
    else:
        path, payload = (
            out / f"broken-random-{index:04d}.jpg",
            bytes(np.random.default_rng(index).integers(0, 256, 4096, dtype=np.uint8)),
        )
    path.write_bytes(payload)
    return path


def make(count: int, out: Path, seed: int = 7) -> list[Path]:
    """Write ``count`` files into ``out`` (created if needed) and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    variants = _variants(rng)
    broken = BROKEN if count >= 40 else min(1, count)
    written = []
    for index in range(count - broken):
        label, make_image = variants[index % len(variants)]
        accent = " café" if index % 17 == 0 else ""  # some names carry non-ASCII characters
        path = out / f"{label}{accent} {index:04d}.jpg"
        cv2.imwrite(str(path), make_image())
        written.append(path)
    good = cv2.imencode(".jpg", _bgr(data.astronaut()))[1].tobytes()
    written += [_broken(out, count - broken + i, good) for i in range(broken)]
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="how many files to write")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data", help="folder to write them to")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    files = make(args.count, args.out, args.seed)
    broken = sum(1 for f in files if f.name.startswith("broken-"))
    print(f"wrote {len(files)} files to {args.out} ({broken} deliberately broken)")


if __name__ == "__main__":
    main()
