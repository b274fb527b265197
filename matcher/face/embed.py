"""Embedding: dlib's ResNet descriptor of an aligned chip, L2-normalised.

Input: uint8 (150, 150, 3) chip from :mod:`matcher.face.align`. Output: float32 (128,) with
unit norm, so that cosine similarity is a dot product. dlib's raw descriptors have norms of
about 1.3–1.6; dlib compares them by Euclidean distance (same person when < 0.6). After
normalisation ``||a - b||**2 = 2 - 2 * cos(a, b)``. With ``FLIP_AVERAGE`` the embedding is the
normalised sum of the unit descriptors of the chip and of its left-right mirror (see params).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from matcher.errors import QualityError
from matcher.face import models
from matcher.face.params import EMBEDDING_DIM, FLIP_AVERAGE, NUM_JITTERS


def embed(chip: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Unit-norm float32 (128,) embedding of a face chip."""
    unit = _unit_descriptor(chip)
    if not FLIP_AVERAGE:
        return unit.astype(np.float32)
    both = unit + _unit_descriptor(chip[:, ::-1])
    return (both / np.linalg.norm(both)).astype(np.float32)


def _unit_descriptor(chip: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """dlib's descriptor of ``chip``, divided by its norm (float64 (128,))."""
    raw = np.asarray(
        models.resnet().compute_face_descriptor(np.ascontiguousarray(chip), NUM_JITTERS),
        dtype=np.float64,
    ).reshape(-1)
    if raw.shape != (EMBEDDING_DIM,):
        raise ValueError(f"model returned {raw.shape[0]} values, expected {EMBEDDING_DIM}")
    norm = float(np.linalg.norm(raw))
    if not np.isfinite(norm) or norm == 0.0:
        raise QualityError("the face chip gave a degenerate embedding", reason="bad_embedding")
    return raw / norm
