"""Face templates from photographs: dlib HOG (or MMOD CNN) detection, 68-point alignment,
ResNet 128-d embedding, quality checks before enrolment or search.

Stages, one module each: :mod:`~matcher.face.detect`, :mod:`~matcher.face.landmarks`,
:mod:`~matcher.face.align`, :mod:`~matcher.face.quality`, :mod:`~matcher.face.embed`;
:mod:`~matcher.face.pipeline` chains them, :mod:`~matcher.face.batch` runs them over a process
pool, :mod:`~matcher.face.template` is the stored type, :mod:`~matcher.face.params` holds every
threshold with its reason. Model files come from ``face_recognition_models`` and are loaded once
per process (:mod:`~matcher.face.models`); nothing is downloaded at run time.

Typical use::

    from matcher.face import extract_face, similarity
    a = extract_face("probe.jpg").template          # raises ImageError / QualityError
    b = FaceTemplate.from_bytes(stored_bytes)
    score = similarity(a, b)                         # cosine; TemplateFormatError if formats differ
"""

from matcher.face.batch import BatchItem, extract_batch
from matcher.face.pipeline import ExtractOptions, FaceExtraction, extract_face, extract_from_pixels
from matcher.face.quality import QualityReport
from matcher.face.template import FaceTemplate, format_name, similarity, similarity_matrix

__all__ = [
    "BatchItem",
    "ExtractOptions",
    "FaceExtraction",
    "FaceTemplate",
    "QualityReport",
    "extract_batch",
    "extract_face",
    "extract_from_pixels",
    "format_name",
    "similarity",
    "similarity_matrix",
]
