"""Alignment: which chip pixels come from the image alone (real photo, real dlib)."""

from __future__ import annotations

import cv2
import numpy as np
import skimage.data

from matcher.face import params as P
from matcher.face.align import chip_in_frame, face_chip
from matcher.face.detect import detect_faces
from matcher.face.landmarks import locate

#: The photo is lifted to at least this grey level, so that only dlib's fill is black.
FLOOR = 40


def test_chip_in_frame_marks_where_the_fill_is() -> None:
    """On faces cut by the border (rotated; and four times larger, where dlib cuts the chip
    from a smaller copy of the image) and on the whole photo: every pixel marked inside
    is pure photo, and the chip is black where no photo reaches."""
    photo = np.maximum(skimage.data.astronaut(), FLOOR).astype(np.uint8)
    turn = cv2.getRotationMatrix2D((220, 130), 25, 1.0)
    rotated = np.ascontiguousarray(cv2.warpAffine(photo, turn, (512, 512))[:, :245])
    rotated = np.maximum(rotated, FLOOR).astype(np.uint8)  # warpAffine's own black border
    large = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    large = np.maximum(np.ascontiguousarray(large[:, : 4 * 258]), FLOOR).astype(np.uint8)
    inside = []
    for image in (rotated, large, photo):
        found = detect_faces(image, "hog", cnn_fallback=False)
        marks = locate(image, found.boxes[int(np.argmax(found.areas))])
        chip = face_chip(image, marks).min(axis=2)
        got = chip_in_frame(image.shape, marks)
        assert got.shape == (P.CHIP_SIZE, P.CHIP_SIZE) and got.dtype == bool
        assert chip[got].min() >= FLOOR - 1  # no fill inside
        assert np.all(chip[~got] < FLOOR)  # fill, or photo blended with it
        inside.append(float(got.mean()))
    assert 0.5 < inside[0] < 0.95 and 0.5 < inside[1] < 0.95 and inside[2] == 1.0
