"""The persisted face template: a unit-norm embedding tagged with the model that made it.

* ``embedding``: float32 (128,), L2 norm 1 (within NORM_TOLERANCE).
* ``quality``: 0–100, the extractor's score (:mod:`matcher.face.quality`).
* ``format``: names the embedding model AND the detector that placed the face, e.g.
  ``dlib-resnet-v1-flip-lm68/hog``. Embeddings of different models live in unrelated spaces, and a
  different detector shifts the landmarks the chip is aligned on, so templates are only
  compared within one format: :func:`similarity` raises :class:`TemplateFormatError`
  (reason ``format_mismatch``) otherwise.
* ``format_version``: the byte layout of :meth:`FaceTemplate.to_bytes`.

Similarity is the cosine, i.e. the dot product of the unit embeddings, in [-1, 1]. For unit
vectors Euclidean distance ``d`` and cosine ``s`` are tied by ``d**2 = 2 - 2 s``; dlib's usual
rule "same person when distance < 0.6" is stated for its raw descriptors (norms 1.3–1.55), so
there is no exact mapping; on LFW, pairs at raw distance 0.6 have a cosine of 0.90 (5–95%:
0.89–0.915). Measured thresholds: cosine 0.910 at FMR 1%, 0.928 at FMR 0.1%, 0.958 at 1e-5
(benchmarks/README.md, "Face" and "Impostor tail and FPIR"; the node's table is
``node.thresholds.FACE_THRESHOLDS``). Set operating thresholds from impostor scores
(``matcher.evaluation.threshold_at_fmr``).

Byte layout (little-endian), version 1::

    magic b"BDXF" | u8 version | u8 len(format) | format (ASCII) | u8 quality | u16 dim
    | dim x float32 embedding
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from matcher.errors import TemplateFormatError
from matcher.face.params import DETECTOR_HOG, DETECTORS, EMBEDDING_DIM, NORM_TOLERANCE

#: dlib's ResNet v1 descriptor averaged with that of the mirrored chip (``FLIP_AVERAGE``), the
#: chip aligned on the 68-point landmarks (``ALIGN_LANDMARKS``). Plain v1 embeddings (format
#: ``dlib-resnet-v1/...``) are another space, and flip-averaged ones on 5-point chips
#: (``dlib-resnet-v1-flip/...``) are shifted by the alignment: neither is compared with these.
MODEL = "dlib-resnet-v1-flip-lm68"
FORMAT_VERSION = 1
MAGIC = b"BDXF"
_HEAD = struct.Struct("<4sBB")
_TAIL = struct.Struct("<BH")
_FORMAT_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")


def format_name(detector: str = DETECTOR_HOG, model: str = MODEL) -> str:
    """The format tag of templates made with ``model`` on faces found by ``detector``."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}")
    return f"{model}/{detector}"


DEFAULT_FORMAT = format_name()


@dataclass(frozen=True, eq=False)
class FaceTemplate:
    """One face: unit-norm float32 (128,) embedding, quality 0–100, format tag."""

    embedding: npt.NDArray[np.float32]
    quality: int
    format: str = field(default=DEFAULT_FORMAT)
    format_version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        try:
            emb = np.array(self.embedding, dtype=np.float32)
        except (TypeError, ValueError):  # numpy's message quotes the value: name the field
            raise TemplateFormatError("embedding: not numeric") from None
        if emb.shape != (EMBEDDING_DIM,):
            raise TemplateFormatError(f"embedding: expected shape (128,), got {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise TemplateFormatError("embedding contains NaN or infinity")
        norm = float(np.linalg.norm(emb.astype(np.float64)))
        if abs(norm - 1.0) > NORM_TOLERANCE:
            raise TemplateFormatError(f"embedding is not unit-norm (norm {norm:.4f})")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int | np.integer):
            raise TemplateFormatError("quality must be an integer")
        if not 0 <= int(self.quality) <= 100:
            raise TemplateFormatError(f"quality {self.quality} outside 0..100")
        if not isinstance(self.format, str) or not _FORMAT_RE.match(self.format):
            raise TemplateFormatError(
                "format tag is not 'model/detector' (lower-case letters, digits, '.', '+', '-')"
            )
        if len(self.format) > 255:
            raise TemplateFormatError("format tag longer than 255 characters")
        if self.format_version != FORMAT_VERSION:
            raise TemplateFormatError(
                f"format version {self.format_version} is not supported "
                f"(this node reads {FORMAT_VERSION})",
                reason="unsupported_version",
            )
        emb.setflags(write=False)
        object.__setattr__(self, "embedding", emb)
        object.__setattr__(self, "quality", int(self.quality))

    def to_bytes(self) -> bytes:
        """Canonical versioned bytes (layout in the module docstring)."""
        fmt = self.format.encode("ascii")
        return (
            _HEAD.pack(MAGIC, self.format_version, len(fmt))
            + fmt
            + _TAIL.pack(self.quality, EMBEDDING_DIM)
            + self.embedding.astype("<f4").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceTemplate:
        """Parse and validate bytes from :meth:`to_bytes`; raises TemplateFormatError."""
        data = bytes(data)
        if len(data) < _HEAD.size:
            raise TemplateFormatError("face template too short", reason="malformed_template")
        magic, version, n = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise TemplateFormatError("not a bdx face template", reason="malformed_template")
        if version != FORMAT_VERSION:
            raise TemplateFormatError(
                f"face template version {version} is not supported", reason="unsupported_version"
            )
        start = _HEAD.size + n
        if len(data) < start + _TAIL.size:
            raise TemplateFormatError("face template truncated", reason="malformed_template")
        try:
            fmt = data[_HEAD.size : start].decode("ascii")
        except UnicodeDecodeError as exc:
            raise TemplateFormatError(
                "format tag is not ASCII", reason="malformed_template"
            ) from exc
        quality, dim = _TAIL.unpack_from(data, start)
        body = data[start + _TAIL.size :]
        if dim != EMBEDDING_DIM or len(body) != 4 * dim:
            raise TemplateFormatError(
                f"expected {EMBEDDING_DIM} float32 values, got dim {dim} and {len(body)} bytes",
                reason="malformed_template",
            )
        emb = np.frombuffer(body, dtype="<f4").astype(np.float32)
        try:
            return cls(embedding=emb, quality=quality, format=fmt, format_version=version)
        except TemplateFormatError as exc:
            if exc.reason == TemplateFormatError.default_reason:
                exc.reason = "malformed_template"
            raise

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceTemplate):
            return NotImplemented
        return (
            self.format == other.format
            and self.format_version == other.format_version
            and self.quality == other.quality
            and np.array_equal(self.embedding, other.embedding)
        )

    __hash__ = None  # type: ignore[assignment]


def require_same_format(a: FaceTemplate, b: FaceTemplate) -> None:
    """Raise TemplateFormatError (``format_mismatch``) unless both have one format."""
    if a.format != b.format or a.format_version != b.format_version:
        raise TemplateFormatError(
            f"cannot compare {a.format} v{a.format_version} with {b.format} v{b.format_version}",
            reason="format_mismatch",
        )


def similarity(a: FaceTemplate, b: FaceTemplate) -> float:
    """Cosine similarity in [-1, 1] of two templates of the same format."""
    require_same_format(a, b)
    return float(np.clip(np.dot(a.embedding, b.embedding), -1.0, 1.0))


def similarity_matrix(
    probes: npt.NDArray[np.float32], gallery: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Cosine similarities of unit embeddings: probes (nq, d) x gallery (nb, d) -> (nq, nb)."""
    q = np.ascontiguousarray(probes, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"shapes {q.shape} and {g.shape} are not (nq, d) and (nb, d)")
    return q @ g.T
