"""The pipeline on a real photo and its variants: each quality refusal, fallbacks, robustness."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import skimage.data

from matcher.errors import ImageError, QualityError, TemplateFormatError
from matcher.face import detect
from matcher.face import params as P
from matcher.face.detect import detect_faces
from matcher.face.pipeline import (
    ExtractOptions,
    FaceExtraction,
    extract_from_pixels,
    most_central,
)
from matcher.face.template import similarity

Image = npt.NDArray[np.uint8]
#: Same photo under mild changes: far above the LFW threshold at FAR 0.1% (~0.93).
SAME_PHOTO = 0.97


def refusal(img: np.ndarray, **options: object) -> str:
    with pytest.raises(QualityError) as err:
        extract_from_pixels(np.ascontiguousarray(img), ExtractOptions(**options))  # type: ignore[arg-type]
    return err.value.reason


def test_upright_portrait(upright: FaceExtraction) -> None:
    t = upright.template
    assert t.format == "dlib-resnet-v1-flip-lm68/hog" and t.embedding.shape == (128,)
    assert np.linalg.norm(t.embedding) == pytest.approx(1.0, abs=1e-5)
    assert 60 <= t.quality <= 100 and t.quality == upright.quality.score
    left, top, right, bottom = upright.box
    assert 150 < left < right < 300 and 50 < top < bottom < 200  # the astronaut's face
    assert upright.landmarks.shape == (5, 2)
    assert upright.faces_found == 1 and not upright.whole_image and upright.notes == ()
    assert set(upright.timings_ms) == set(upright.cpu_ms) == {"detect", "align", "quality", "embed"}
    assert all(v >= 0 for v in (*upright.timings_ms.values(), *upright.cpu_ms.values()))
    assert abs(upright.quality.yaw) < 15 and abs(upright.quality.pitch) < 15
    upright.quality.check()  # passes: returns nothing


def test_repeatable(astronaut: Image, upright: FaceExtraction) -> None:
    again = extract_from_pixels(astronaut)
    assert np.array_equal(again.template.embedding, upright.template.embedding)


def test_mild_changes_keep_the_identity(astronaut: Image, upright: FaceExtraction) -> None:
    h, w = astronaut.shape[:2]
    rotated = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), 10, 1.0), (w, h))
    smaller = cv2.resize(astronaut, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    brighter = np.clip(astronaut * 1.2, 0, 255).astype(np.uint8)
    for variant in (rotated, smaller, brighter):
        got = extract_from_pixels(np.ascontiguousarray(variant))
        assert similarity(got.template, upright.template) > SAME_PHOTO


def test_too_small(astronaut: Image) -> None:
    small = cv2.resize(astronaut, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    assert refusal(small) == "face_too_small"


def test_blurred(astronaut: Image) -> None:
    assert refusal(cv2.GaussianBlur(astronaut, (0, 0), 4)) == "blurred"


def test_a_face_cut_by_the_border(astronaut: Image, upright: FaceExtraction) -> None:
    """A face a fifth outside the image is refused as such; a blurred face cut by the border is
    refused as blurred (the chip's black fill beyond the border used to read as a sharp edge)."""
    left, _, right, _ = upright.box
    cut = np.ascontiguousarray(astronaut[:, : int(right - 0.2 * (right - left))])
    assert refusal(cut, multiple_faces="largest") == "face_out_of_frame"
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2)
    assert refusal(blurred) == "blurred"  # uncut: sharpness 9.7
    edge = np.ascontiguousarray(blurred[:, : int(right - 0.1 * (right - left))])
    got = extract_from_pixels(edge, ExtractOptions(check_quality=False, multiple_faces="largest"))
    assert P.MIN_IN_FRAME < got.quality.in_frame < 1.0
    assert [r for r, _ in got.quality.failures()] == ["blurred"]
    assert got.quality.factors["framing"] < 1.0


def test_a_large_blurred_face_cut_by_the_border(astronaut: Image, upright: FaceExtraction) -> None:
    """Eyes 240 px apart: dlib cuts the chip from a smaller copy of the image, whose fill
    reaches further into the chip than the chip rectangle says (it measured sharp, 160)."""
    left, _, right, _ = (6 * int(v) for v in upright.box)
    large = cv2.resize(astronaut, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    blurred = cv2.GaussianBlur(large, (0, 0), 15)
    cut = np.ascontiguousarray(blurred[:, : int(right - 0.1 * (right - left))])
    got = extract_from_pixels(cut, ExtractOptions(check_quality=False, multiple_faces="largest"))
    assert got.quality.interocular > 200 and got.quality.in_frame < 1.0
    assert [r for r, _ in got.quality.failures()] == ["blurred"]


def test_underexposed(astronaut: Image) -> None:
    assert refusal((astronaut * 0.15).astype(np.uint8)) == "underexposed"


def test_overexposed(astronaut: Image) -> None:
    assert refusal(np.clip(astronaut * 2.0, 0, 255).astype(np.uint8)) == "overexposed"


def test_quality_checks_can_be_reported_instead(astronaut: Image) -> None:
    blurred = np.ascontiguousarray(cv2.GaussianBlur(astronaut, (0, 0), 4))
    got = extract_from_pixels(blurred, ExtractOptions(check_quality=False))
    assert [r for r, _ in got.quality.failures()] == ["blurred"]
    assert got.template.quality < 50


@pytest.mark.parametrize("image", ["coffee", "noise", "flat"])
def test_no_face(image: str) -> None:
    pixels = {
        "coffee": lambda: skimage.data.coffee(),
        "noise": lambda: np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8),
        "flat": lambda: np.full((120, 100, 3), 128, np.uint8),
    }[image]()
    assert refusal(pixels) == "no_face"


def test_tight_crop_needs_the_whole_image_fallback(
    astronaut: Image, upright: FaceExtraction
) -> None:
    crop = astronaut[95:165, 185:262]  # eyes to mouth: too tight for the HOG window
    assert detect_faces(np.ascontiguousarray(crop)).count == 0
    assert refusal(crop) == "no_face"
    got = extract_from_pixels(np.ascontiguousarray(crop), ExtractOptions(whole_image_is_face=True))
    assert got.whole_image and got.faces_found == 0 and "whole image" in got.notes[0]
    assert similarity(got.template, upright.template) > 0.9


def test_cnn_fallback_when_hog_finds_nothing(
    astronaut: Image, upright: FaceExtraction, monkeypatch: pytest.MonkeyPatch
) -> None:
    crop = astronaut[0:300, 100:350]  # an LFW-like head-and-shoulders frame
    h, w = crop.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 50, 1.0)  # past HOG's in-plane range
    tilted = np.ascontiguousarray(cv2.warpAffine(crop, turn, (w, h)))
    assert refusal(tilted) == "no_face"  # only a declared face tries the CNN
    found = detect_faces(tilted, cnn_fallback=True)
    assert found.count == 1 and found.fallback
    assert not detect_faces(np.ascontiguousarray(crop), cnn_fallback=True).fallback
    got = extract_from_pixels(tilted, ExtractOptions(whole_image_is_face=True))
    assert "CNN fallback" in got.notes[0] and got.template.format.endswith("/hog")
    assert not got.whole_image
    assert got.cpu_ms["detect"] > 0
    assert similarity(got.template, upright.template) > 0.9  # same photo, re-aligned upright
    monkeypatch.setattr(detect, "HOG_CNN_FALLBACK_STEPS", ())
    assert extract_from_pixels(tilted, ExtractOptions(whole_image_is_face=True)).whole_image


def test_fallback_is_not_used_when_a_face_is_found(
    upright: FaceExtraction, astronaut: Image
) -> None:
    got = extract_from_pixels(astronaut, ExtractOptions(whole_image_is_face=True))
    assert not got.whole_image and np.array_equal(got.box, upright.box)


def test_two_faces(astronaut: Image, upright: FaceExtraction) -> None:
    context = astronaut[40:240, 130:320]
    pair = np.ascontiguousarray(np.hstack([context, context]))
    assert refusal(pair) == "multiple_faces"
    got = extract_from_pixels(pair, ExtractOptions(multiple_faces="largest"))
    assert got.faces_found == 2 and "largest" in got.notes[0]
    assert similarity(got.template, upright.template) > SAME_PHOTO


def test_a_much_smaller_second_face_is_background(astronaut: Image) -> None:
    big = cv2.resize(astronaut[0:300, 100:350], None, fx=2.2, fy=2.2)  # face ~190 px
    small = astronaut[40:240, 130:320]  # face ~87 px: a fifth of the area
    canvas = np.zeros((big.shape[0], big.shape[1] + small.shape[1], 3), np.uint8)
    canvas[:, : big.shape[1]] = big
    canvas[: small.shape[0], big.shape[1] :] = small
    got = extract_from_pixels(canvas)  # the default policy refuses only comparable faces
    assert got.faces_found == 2
    assert got.notes == (
        "1 smaller or fainter face(s) ignored as bystanders (under 25% of the used face's "
        "area, or weak)",
    )  # said: it was silent, and the small face may be the one the caller meant


def test_cnn_detector_makes_its_own_format(astronaut: Image, upright: FaceExtraction) -> None:
    crop = np.ascontiguousarray(astronaut[0:300, 100:350])
    got = extract_from_pixels(crop, ExtractOptions(detector="cnn"))
    assert got.template.format == "dlib-resnet-v1-flip-lm68/cnn"
    with pytest.raises(TemplateFormatError):
        similarity(got.template, upright.template)
    assert float(got.template.embedding @ upright.template.embedding) > 0.9


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((50, 50), np.uint8),
        np.zeros((50, 50, 4), np.uint8),
        np.zeros((50, 50, 3), np.float32),
        np.zeros((0, 50, 3), np.uint8),
    ],
)
def test_pixel_arrays_must_be_rgb_uint8(pixels: np.ndarray) -> None:
    with pytest.raises(ImageError):
        extract_from_pixels(pixels)


def test_non_contiguous_input_is_accepted(astronaut: Image, upright: FaceExtraction) -> None:
    flipped_twice = astronaut[:, ::-1][:, ::-1]  # a strided view
    got = extract_from_pixels(flipped_twice)
    assert np.array_equal(got.template.embedding, upright.template.embedding)


def test_huge_image_is_downscaled_for_detection(astronaut: Image, upright: FaceExtraction) -> None:
    big = cv2.resize(astronaut, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)  # 2048 px
    got = extract_from_pixels(big)
    assert got.box[0] == pytest.approx(upright.box[0] * 4, abs=40)
    assert similarity(got.template, upright.template) > 0.95


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 2, 3), (5000, 20, 3), (300, 300, 3)])
def test_degenerate_images_with_the_fallback(shape: tuple[int, int, int]) -> None:
    flat = np.full(shape, 100, np.uint8)
    assert refusal(flat) == "no_face"
    assert refusal(flat, whole_image_is_face=True) in {"face_too_small", "blurred"}


@pytest.mark.parametrize(("field", "value"), [("detector", "sift"), ("multiple_faces", "all")])
def test_options_are_validated(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        ExtractOptions(**{field: value})  # type: ignore[arg-type]


def test_central_policy_prefers_the_face_nearest_the_centre(astronaut: Image) -> None:
    small = astronaut[40:240, 130:320]  # face ~87 px
    big = cv2.resize(small, None, fx=1.4, fy=1.4)  # face ~122 px: larger, still comparable
    canvas = np.zeros((big.shape[0], big.shape[1] + 2 * small.shape[1], 3), np.uint8)
    canvas[: big.shape[0], : big.shape[1]] = big  # at the left edge
    x0 = (canvas.shape[1] - small.shape[1]) // 2
    canvas[: small.shape[0], x0 : x0 + small.shape[1]] = small  # centred horizontally
    canvas = np.ascontiguousarray(canvas)
    central = extract_from_pixels(canvas, ExtractOptions(multiple_faces="central"))
    largest = extract_from_pixels(canvas, ExtractOptions(multiple_faces="largest"))
    assert central.faces_found == largest.faces_found == 2
    assert "most central" in central.notes[0] and "largest" in largest.notes[0]
    assert x0 <= central.box[0] and central.box[2] < x0 + small.shape[1]
    assert largest.box[2] < big.shape[1]


def test_most_central_rule() -> None:
    boxes = np.array([[0, 0, 99, 99], [110, 110, 159, 159], [80, 80, 119, 119]], np.int32)
    assert most_central(boxes, 200, 200) == 2  # centred exactly
    assert most_central(boxes[:2], 200, 200) == 1  # (134.5, 134.5) is nearer (99.5, 99.5)
    assert most_central(boxes[:2], 120, 120) == 0  # the same boxes in a smaller image
