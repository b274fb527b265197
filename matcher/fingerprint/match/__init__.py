"""Fingerprint comparison: MCC cylinders + LSS-R consolidation + an alignment check, built for
batch scoring.

Public API:

* :func:`prepare` ``(FingerprintTemplate) -> SearchTemplate``: descriptors + geometry.
* :func:`pack` ``(list[SearchTemplate]) -> PackedTemplates``: a fixed-shape block.
* :func:`score_many` ``(SearchTemplate, PackedTemplates) -> (nb,) float32``: the 1:N kernel.
* :func:`score` ``(a, b) -> float``: 1:1, a thin call of the kernel (so equal to it).
* :func:`explain` ``(a, b) -> Explanation``: paired minutiae and partial scores.
* :func:`threshold_for_fmr` ``(fmr) -> float``: operating thresholds (``thresholds.py``).

Scores are similarities in [0, 1]; see ``kernel.py`` for the algorithm, ``params.py`` for the
tunables and ``types.py`` for array shapes.
"""

from __future__ import annotations

from matcher.fingerprint.match.cylinders import prepare
from matcher.fingerprint.match.explain import Explanation, explain
from matcher.fingerprint.match.kernel import score_many
from matcher.fingerprint.match.thresholds import threshold_for_fmr
from matcher.fingerprint.match.types import (
    FORMAT,
    VERSION,
    PackedTemplates,
    SearchTemplate,
    pack,
)
from matcher.fingerprint.template import FingerprintTemplate


def score(a: FingerprintTemplate, b: FingerprintTemplate) -> float:
    """Similarity of probe ``a`` to reference ``b`` in [0, 1] (= the batch kernel's score)."""
    return float(score_many(prepare(a), pack([prepare(b)]))[0])


__all__ = [
    "FORMAT",
    "VERSION",
    "Explanation",
    "PackedTemplates",
    "SearchTemplate",
    "explain",
    "pack",
    "prepare",
    "score",
    "score_many",
    "threshold_for_fmr",
]
