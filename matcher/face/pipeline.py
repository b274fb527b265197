"""From an image to a face template: decode, detect, landmarks, align, quality, embed.

:func:`extract_face` takes bytes or a path (decoded by :mod:`matcher.imageio`: size limits
before decoding, EXIF orientation, any mode converted to RGB); :func:`extract_from_pixels`
takes a uint8 (H, W, 3) RGB array. Both return a :class:`FaceExtraction` or raise a typed
error: :class:`~matcher.errors.ImageError` for unusable input, :class:`QualityError` with reason
``no_face``, ``multiple_faces``, ``face_too_small``, ``strong_pose``, ``face_out_of_frame``,
``underexposed``, ``overexposed`` or ``blurred``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from matcher import imageio
from matcher.errors import QualityError
from matcher.face import params as P
from matcher.face.align import chip_in_frame, face_chip
from matcher.face.detect import as_dlib_rgb, detect_faces
from matcher.face.embed import embed
from matcher.face.landmarks import locate
from matcher.face.quality import QualityReport, assess
from matcher.face.template import FaceTemplate, format_name


@dataclass(frozen=True)
class ExtractOptions:
    """How to extract.

    ``detector``: ``hog`` (default) or ``cnn``. ``multiple_faces``: ``refuse`` (default; an
    image with several comparable faces is ambiguous) or ``largest`` (take the largest face and
    say so in the notes). ``whole_image_is_face``: the image is declared to hold a face:
    when HOG finds nothing, the CNN is tried, then the whole image is taken as the face
    (tightly cropped portraits). ``check_quality``: refuse faces failing a check
    (when False, the measures and score are still reported).
    """

    detector: str = P.DEFAULT_DETECTOR
    multiple_faces: str = P.MULTIPLE_REFUSE
    whole_image_is_face: bool = False
    check_quality: bool = True
    max_bytes: int = imageio.DEFAULT_MAX_BYTES
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.detector not in P.DETECTORS:
            raise ValueError(f"detector must be one of {P.DETECTORS}")
        if self.multiple_faces not in P.MULTIPLE_POLICIES:
            raise ValueError(f"multiple_faces must be one of {P.MULTIPLE_POLICIES}")


@dataclass(frozen=True)
class FaceExtraction:
    """A template and how it was made.

    ``box``: int32 (4,) [left, top, right, bottom] of the face in the upright image.
    ``landmarks``: float32 (5, 2) (x, y). ``timings_ms``: wall-clock milliseconds per stage
    (``decode``, ``detect``, ``align`` (landmarks + chip), ``quality``, ``embed``); ``cpu_ms``:
    the process CPU time of the same stages (the one-core cost, unaffected by other load).
    """

    template: FaceTemplate
    box: npt.NDArray[np.int32]
    landmarks: npt.NDArray[np.float32]
    quality: QualityReport
    whole_image: bool
    faces_found: int
    notes: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Wall and CPU milliseconds of consecutive stages."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t, self._c = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.wall[stage], self.cpu[stage] = (t - self._t) * 1e3, (c - self._c) * 1e3
        self._t, self._c = t, c


def _whole_image_box(h: int, w: int) -> npt.NDArray[np.int32]:
    dx, dy = round(w * P.WHOLE_IMAGE_INSET), round(h * P.WHOLE_IMAGE_INSET)
    return np.array([dx, dy, w - 1 - dx, h - 1 - dy], dtype=np.int32)


def most_central(boxes: npt.NDArray[np.int32], h: int, w: int) -> int:
    """Index of the box (n, 4) [left, top, right, bottom] whose centre is nearest the centre of
    an ``h`` x ``w`` image (ties: the first, i.e. the largest)."""
    b = boxes.astype(np.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return int(np.argmin(np.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2)))


def extract_from_pixels(
    rgb: npt.NDArray[np.uint8], options: ExtractOptions | None = None
) -> FaceExtraction:
    """Template of the face in ``rgb`` (uint8 (H, W, 3), upright)."""
    opts = options or ExtractOptions()
    image = as_dlib_rgb(rgb)
    h, w = image.shape[:2]
    notes: list[str] = []

    clock = _Clock()
    found = detect_faces(image, opts.detector, cnn_fallback=opts.whole_image_is_face)
    clock.lap("detect")
    if found.fallback:
        notes.append("no face found by HOG; found by the CNN fallback")
    areas = found.areas
    confident = np.flatnonzero(found.scores >= P.WEAK_FACE_SCORE)
    candidates = confident if confident.size else np.arange(found.count)
    score: float | None
    if found.count == 0:
        if not opts.whole_image_is_face:
            raise QualityError("no face found in the image", reason="no_face")
        box, score, whole = _whole_image_box(h, w), None, True
        notes.append("no face detected; the whole image was declared to be the face")
    else:
        first = int(candidates[0])  # detections are sorted largest first
        similar = candidates[areas[candidates] >= P.SECONDARY_FACE_AREA_RATIO * areas[first]]
        comparable = int(similar.size)
        if comparable > 1:
            if opts.multiple_faces == P.MULTIPLE_REFUSE:
                raise QualityError(
                    f"{comparable} faces of similar size in the image; one is required",
                    reason="multiple_faces",
                )
            if opts.multiple_faces == P.MULTIPLE_CENTRAL:
                first = int(similar[most_central(found.boxes[similar], h, w)])
                notes.append(f"{comparable} faces found; the most central was used")
            else:
                notes.append(f"{comparable} faces found; the largest was used")
        ignored = found.count - comparable
        if ignored:  # said, not silent: one of them may be the face the caller meant
            notes.append(
                f"{ignored} smaller or fainter face(s) ignored as bystanders (under "
                f"{P.SECONDARY_FACE_AREA_RATIO:.0%} of the used face's area, or weak)"
            )
        box, score, whole = found.boxes[first], float(found.scores[first]), False

    clock.lap("notes")  # the bookkeeping above is not a stage
    marks = locate(image, box)
    chip = face_chip(image, marks)
    clock.lap("align")
    report = assess(marks, chip, score, chip_in_frame(image.shape, marks))
    clock.lap("quality")
    if opts.check_quality:
        report.check()
    clock.lap("check")
    embedding = embed(chip)
    clock.lap("embed")
    for skipped in ("notes", "check"):
        del clock.wall[skipped], clock.cpu[skipped]

    template = FaceTemplate(
        embedding=embedding, quality=report.score, format=format_name(opts.detector)
    )
    return FaceExtraction(
        template=template,
        box=np.asarray(box, dtype=np.int32),
        landmarks=marks.points,
        quality=report,
        whole_image=whole,
        faces_found=found.count,
        notes=tuple(notes),
        timings_ms=clock.wall,
        cpu_ms=clock.cpu,
    )


def extract_face(source: imageio.Source, options: ExtractOptions | None = None) -> FaceExtraction:
    """Decode ``source`` (bytes or path) and extract its face template.

    A JPEG whose longer side exceeds ``params.DECODE_MIN_SIDE`` is decoded at a reduced scale
    (1/2, 1/4 or 1/8); ``box`` and ``landmarks`` are still given in the file's pixel grid.
    """
    opts = options or ExtractOptions()
    clock = _Clock()
    decoded = imageio.load_rgb(
        source, max_bytes=opts.max_bytes, max_pixels=opts.max_pixels, reduce_to=P.DECODE_MIN_SIDE
    )
    clock.lap("decode")
    result = extract_from_pixels(decoded.pixels, opts)
    result.timings_ms["decode"] = clock.wall["decode"]
    result.cpu_ms["decode"] = clock.cpu["decode"]
    if decoded.scale == 1.0:
        return result
    return replace(  # a JPEG decoded at a reduced scale: positions in the file's pixel grid
        result,
        box=np.rint(result.box / decoded.scale).astype(np.int32),
        landmarks=(result.landmarks / decoded.scale).astype(np.float32),
    )
