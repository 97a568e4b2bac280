"""Write a folder of images to caption, and a list of URLs that point at them on a local server.

    python examples/url-captions/make_data.py --count 10000 --port 8765
    python examples/url-captions/serve.py --port 8765        # serves data/images on 127.0.0.1

Images: photos bundled in scikit-image (astronaut, coffee, chelsea, text, page, camera), signs
and photos with text drawn on them, frames with pedestrians from OpenCV's `vtest.avi` (when
the opencv-doc package is installed), and variations of these (scaled, darker, noisy,
rotated), so that similar pictures have different bytes. The URL list names each image once,
then repeats them under other URLs (`?copy=N`: the same bytes, which the content cache
recognises) up to --count lines, plus three that fail: one the server answers 404, one that is
not an image and one slower than the run's fetch timeout. Output is deterministic for a --seed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from skimage import data

Image = np.ndarray
VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  #: pedestrians, from opencv-doc
VIDEO_FRAMES = (60, 140, 260, 380, 500, 640)  #: frames with several people in view
PHOTOS = ("astronaut", "coffee", "chelsea", "text", "page", "camera")
SIGNS = (
    ("stop", "STOP", (30, 30, 200), (245, 245, 245)),
    ("exit", "EXIT", (250, 250, 250), (40, 140, 40)),
    ("sale", "SALE 50% OFF", (20, 20, 20), (60, 220, 250)),
    ("parking", "NO PARKING", (200, 60, 20), (250, 250, 250)),
    ("hello", "HELLO WORLD", (250, 250, 250), (90, 40, 20)),
    ("platform", "PLATFORM 9", (250, 250, 250), (120, 60, 0)),
    ("bread", "FRESH BREAD", (30, 60, 120), (200, 235, 250)),
    ("open", "OPEN", (250, 250, 250), (40, 40, 40)),
)  #: (name, text, BGR ink, BGR paper)
CAPTIONED = (("coffee", "CAFE"), ("chelsea", "CAT"), ("rocket", "LAUNCH"))  #: photos with a word on them
BAD = ("missing.jpg", "notes.txt", "slow/astronaut.jpg")  #: 404, not an image, slower than the fetch timeout


def _bgr(picture: Image) -> Image:
    return cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR if picture.ndim == 2 else cv2.COLOR_RGB2BGR)


def sign(text: str, ink: tuple[int, int, int], paper: tuple[int, int, int]) -> Image:
    """A plain sign: ``text`` large and centred, the kind OCR reads reliably."""
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 3.0, 8
    (width, height), _ = cv2.getTextSize(text, font, scale, thickness)
    image = np.full((height + 120, width + 120, 3), paper, np.uint8)
    cv2.putText(image, text, (60, height + 60), font, scale, ink, thickness, cv2.LINE_AA)
    return image


def with_text(photo: Image, text: str) -> Image:
    """``text`` in white on a dark band across the bottom of ``photo``."""
    image = photo.copy()
    height = image.shape[0]
    image[height - 90 :, :] = (image[height - 90 :, :] * 0.3).astype(np.uint8)
    cv2.putText(image, text, (20, height - 25), cv2.FONT_HERSHEY_DUPLEX, 2.0, (255, 255, 255), 4, cv2.LINE_AA)
    return image


def video_frames(path: Path = VIDEO, frames: tuple[int, ...] = VIDEO_FRAMES) -> dict[str, Image]:
    """Frames of the pedestrian video, or none when it is not installed."""
    if not path.exists():
        return {}
    capture = cv2.VideoCapture(str(path))
    found: dict[str, Image] = {}
    for index in range(max(frames) + 1):
        ok, frame = capture.read()
        if not ok:
            break
        if index in frames:
            found[f"people-{index:04d}.jpg"] = frame
    capture.release()
    return found


def originals() -> dict[str, Image]:
    """The pictures every set starts with, by file name."""
    images = {f"{name}.jpg": _bgr(getattr(data, name)()) for name in PHOTOS}
    images |= {f"sign-{name}.png": sign(text, ink, paper) for name, text, ink, paper in SIGNS}
    images |= {f"{name}-{word.lower()}.jpg": with_text(_bgr(getattr(data, name)()), word) for name, word in CAPTIONED}
    return images | video_frames()


def _variations(rng: np.random.Generator) -> list[tuple[str, Callable[[Image], Image]]]:
    def noisy(image: Image) -> Image:
        noise = rng.normal(0, rng.uniform(4, 10), image.shape)
        return np.clip(image + noise, 0, 255).astype(np.uint8)

    def scaled(image: Image) -> Image:
        factor = rng.uniform(0.75, 1.3)
        return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)

    def darker(image: Image) -> Image:
        return (image * rng.uniform(0.6, 0.85)).astype(np.uint8)

    def rotated(image: Image) -> Image:
        height, width = image.shape[:2]
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-6, 6)), 1.0)
        return cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)

    return [("scaled", scaled), ("darker", darker), ("noisy", noisy), ("rotated", rotated)]


def make_images(out: Path, count: int, seed: int = 7) -> list[Path]:
    """Write ``count`` distinct images into ``out``: the originals, then variations of them."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = originals()
    written = []
    for name, image in list(base.items())[:count]:
        written.append(_write(out / name, image))
    variations = _variations(rng)
    names = [name for name in base if not name.startswith("sign-open")]  # the last sign stays unique
    for index in range(count - len(written)):
        source = names[index % len(names)]
        label, vary = variations[(index // len(names)) % len(variations)]
        stem, suffix = source.rsplit(".", 1)
        written.append(_write(out / f"{stem}-{label}-{index:04d}.{suffix}", vary(base[source])))
    return written


def _write(path: Path, image: Image) -> Path:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"OpenCV could not write {path}")
    return path


def make_urls(images: list[Path], count: int, base_url: str, seed: int = 7, bad: bool = True) -> list[str]:
    """``count`` URLs: each image once, then copies (``?copy=N``) picked at random, and ``BAD``."""
    rng = np.random.default_rng(seed)
    names = [image.name for image in images]
    bad_urls = [f"{base_url}/{name}" for name in BAD] if bad else []
    urls = [f"{base_url}/{name}" for name in names][: count - len(bad_urls)]
    copies = count - len(urls) - len(bad_urls)
    picks: list[int] = rng.integers(0, len(names), copies).tolist() if copies > 0 else []
    urls += [f"{base_url}/{names[pick]}?copy={n}" for n, pick in enumerate(picks, 1)]
    for offset, url in enumerate(bad_urls):  # spread out, not all at the end
        urls.insert((offset + 1) * len(urls) // (len(bad_urls) + 1), url)
    return urls


def make(out: Path, count: int, images: int, base_url: str, seed: int = 7) -> tuple[list[Path], Path]:
    """Write ``out/images/`` (with a text file that is not an image) and ``out/urls.txt``."""
    files = make_images(out / "images", images, seed)
    (out / "images" / "notes.txt").write_text("a text file, not an image\n")
    listing = out / "urls.txt"
    listing.write_text("".join(f"{url}\n" for url in make_urls(files, count, base_url, seed)))
    return files, listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="URLs in the list")
    parser.add_argument("--images", type=int, default=60, help="distinct images to write")
    parser.add_argument("--port", type=int, default=8765, help="the port serve.py listens on")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data", help="folder to write to")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    files, listing = make(args.out, args.count, args.images, f"http://127.0.0.1:{args.port}", args.seed)
    print(f"wrote {len(files)} images to {args.out / 'images'} and {args.count} URLs to {listing}")


if __name__ == "__main__":
    main()
