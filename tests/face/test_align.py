"""Alignment: which chip pixels sample the image (real photo, real dlib)."""

from __future__ import annotations

import cv2
import dlib
import numpy as np
import skimage.data

from matcher.face import params as P
from matcher.face.align import chip_in_frame
from matcher.face.detect import detect_faces
from matcher.face.landmarks import locate


def test_chip_in_frame_matches_dlibs_own_chip() -> None:
    """:func:`chip_in_frame` computes dlib's chip-to-image map; dlib's chip of a white image
    (white where it samples the image, black beyond) must agree, on a rotated face cut by
    the border and on the whole photo."""
    photo = skimage.data.astronaut()
    turn = cv2.getRotationMatrix2D((220, 130), 25, 1.0)
    cut = np.ascontiguousarray(cv2.warpAffine(photo, turn, (512, 512))[:, :245])
    inside = []
    for image in (cut, photo):
        found = detect_faces(image, "hog", cnn_fallback=False)
        marks = locate(image, found.boxes[int(np.argmax(found.areas))])
        white = np.full(image.shape, 255, np.uint8)
        chip = dlib.get_face_chip(white, marks.shape, size=P.CHIP_SIZE, padding=P.CHIP_PADDING)
        expected = np.asarray(chip)[..., 0] > 127
        got = chip_in_frame(image.shape, marks)
        assert got.shape == (P.CHIP_SIZE, P.CHIP_SIZE) and got.dtype == bool
        assert np.mean(got == expected) > 0.999
        inside.append(float(got.mean()))
    assert 0.5 < inside[0] < 0.95 and inside[1] == 1.0
