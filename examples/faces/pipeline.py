"""Face detection with the Haar cascade that ships inside opencv-python-headless.

For every input image: a record of the face boxes found, and an annotated copy of the image as
an artifact (artifacts/<item-id>/annotated.jpg). Files that are not images fail on their own,
with a message naming the file, and the rest of the run goes on.
"""

from __future__ import annotations

from typing import Any

import cv2

import shoal

pipeline = shoal.Pipeline("faces")


@pipeline.stage(batch_size=8)
class Detect:
    """Find faces. The cascade loads once per worker process, in setup()."""

    def setup(self) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the face cascade from {path}")

    def process(self, items: list[shoal.Item]) -> list[Any]:
        return [self._detect(item) for item in items]

    def _detect(self, item: shoal.Item) -> dict[str, Any] | Exception:
        try:
            image = item.read_image()
        except shoal.ItemError as exc:
            return exc  # fails this item only; the rest of the batch goes on
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        item.state["image"] = image  # handed to the next stage in memory, never saved
        height, width = image.shape[:2]
        return {
            "faces": len(boxes),
            "boxes": [[int(v) for v in box] for box in boxes],
            "width": width,
            "height": height,
        }


@pipeline.stage()
def annotate(item: shoal.Item) -> dict[str, Any]:
    """Draw the boxes found by Detect and save the picture as an artifact."""
    image = item.state["image"]
    for x, y, w, h in item.result["boxes"]:
        cv2.rectangle(image, (x, y), (x + w, y + h), (40, 220, 40), 2)
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode the annotated image")
    item.write_artifact("annotated.jpg", encoded.tobytes())
    return {"annotated": "annotated.jpg"}
