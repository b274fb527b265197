"""Face detection: boxes of every face in an RGB image, largest first.

``rgb`` is uint8 (H, W, 3). Output boxes are int32 (n, 4) ``[left, top, right, bottom]`` in
input pixels (inclusive corners, as dlib), clipped to the image, and float32 scores (n,).
HOG scores are SVM margins (0 = decision boundary); CNN scores are MMOD confidences.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from matcher.errors import ImageError
from matcher.face import models
from matcher.face.params import (
    CNN_FALLBACK_MIN_SIDE,
    CNN_UPSAMPLE_STEPS,
    DETECT_MAX_SIDE,
    DETECTOR_CNN,
    DETECTOR_HOG,
    DETECTORS,
    HOG_CNN_FALLBACK_STEPS,
    HOG_SCORE_THRESHOLD,
    HOG_UPSAMPLE_STEPS,
)


@dataclass(frozen=True)
class Detections:
    """``boxes`` int32 (n, 4) [left, top, right, bottom]; ``scores`` float32 (n,); largest first.

    ``fallback``: the HOG detector found nothing and these came from the CNN fallback."""

    boxes: npt.NDArray[np.int32]
    scores: npt.NDArray[np.float32]
    fallback: bool = False

    @property
    def count(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def areas(self) -> npt.NDArray[np.int64]:
        b = self.boxes.astype(np.int64)
        return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)


def as_dlib_rgb(rgb: np.ndarray) -> npt.NDArray[np.uint8]:
    """Check and return a C-contiguous uint8 (H, W, 3) array, the only layout dlib accepts."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(
            f"expected uint8 RGB pixels (H, W, 3), got {arr.dtype} {arr.shape}",
            reason="unsupported_image",
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError("image has no pixels", reason="empty_image")
    return np.ascontiguousarray(arr)


def _run(detector: str, image: np.ndarray, upsample: int) -> tuple[np.ndarray, np.ndarray]:
    if detector == DETECTOR_CNN:
        found = models.cnn_detector()(image, upsample)
        rects = [d.rect for d in found]
        scores = [d.confidence for d in found]
    else:
        rects, scores, _ = models.hog_detector().run(image, upsample, HOG_SCORE_THRESHOLD)
    boxes = np.array(
        [(r.left(), r.top(), r.right(), r.bottom()) for r in rects], dtype=np.float64
    ).reshape(-1, 4)
    return boxes, np.asarray(scores, dtype=np.float32).reshape(-1)


def detect_faces(
    rgb: np.ndarray, detector: str = DETECTOR_HOG, cnn_fallback: bool = False
) -> Detections:
    """Detect faces, trying each upsampling step until one finds something; with ``hog`` and
    ``cnn_fallback``, when no step finds a face, the MMOD CNN at HOG_CNN_FALLBACK_STEPS (see
    :mod:`matcher.face.params`)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; expected one of {DETECTORS}")
    image = as_dlib_rgb(rgb)
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    steps = CNN_UPSAMPLE_STEPS if detector == DETECTOR_CNN else HOG_UPSAMPLE_STEPS
    boxes, scores = np.zeros((0, 4)), np.zeros(0, dtype=np.float32)
    for upsample in steps:
        boxes, scores = _run(detector, image, upsample)
        if boxes.shape[0]:
            break
    fallback = False
    if (
        boxes.shape[0] == 0
        and cnn_fallback
        and detector == DETECTOR_HOG
        and min(image.shape[:2]) >= CNN_FALLBACK_MIN_SIDE
    ):
        for upsample in HOG_CNN_FALLBACK_STEPS:
            boxes, scores = _run(DETECTOR_CNN, image, upsample)
            if boxes.shape[0]:
                fallback = True
                break
    boxes = np.rint(boxes / scale)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
    out = boxes.astype(np.int32)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    out, scores = out[keep], scores[keep]
    areas = (out[:, 2] - out[:, 0] + 1).astype(np.int64) * (out[:, 3] - out[:, 1] + 1)
    order = np.argsort(-areas, kind="stable")
    return Detections(boxes=out[order], scores=scores[order], fallback=fallback)
