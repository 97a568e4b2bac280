"""People detection on video frames: the streaming job of the load experiment.

Each frame arriving on the stream goes through OpenCV's HOG people detector (its SVM ships
inside opencv-python-headless: nothing is downloaded). The record keeps the boxes found, so a
run's results say what the detector saw, not only how long it took.
"""

from __future__ import annotations

from typing import Any

import shoal

pipeline = shoal.Pipeline("people")

#: detectMultiScale settings: an 8 px stride and a 1.2 pyramid step find most walkers of the
#: opencv-doc sample at full size (768x576) for about 60-110 ms a frame on one core here
WIN_STRIDE = (8, 8)
PADDING = (8, 8)
PYRAMID_SCALE = 1.2


def make_detector() -> Any:
    """The HOG people detector on one thread: one core per worker, so CPU follows the workers."""
    import cv2  # imported here: the coordinator never needs OpenCV
    import numpy as np

    cv2.setNumThreads(1)
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
    return hog


def detect(hog: Any, image: Any) -> dict[str, Any]:
    """Boxes (x, y, w, h) and SVM scores of the people in a BGR image."""
    boxes, weights = hog.detectMultiScale(image, winStride=WIN_STRIDE, padding=PADDING, scale=PYRAMID_SCALE)
    height, width = image.shape[:2]
    return {
        "people": len(boxes),
        "boxes": [[int(v) for v in box] for box in boxes],
        "scores": [round(float(w), 3) for w in weights.ravel()] if len(weights) else [],
        "width": width,
        "height": height,
    }


@pipeline.stage()
class Detect:
    """Find people; the detector is built once per worker process, in setup()."""

    def setup(self) -> None:
        self.hog = make_detector()

    def process(self, item: shoal.Item) -> dict[str, Any]:
        return detect(self.hog, item.read_image())
