"""Why two templates scored what they did: the paired minutiae and the consolidation steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matcher.fingerprint.match import params
from matcher.fingerprint.match.cylinders import kept_indices, prepare
from matcher.fingerprint.match.kernel import consolidate
from matcher.fingerprint.match.types import pack
from matcher.fingerprint.template import FingerprintTemplate


@dataclass(frozen=True)
class Explanation:
    """One comparison, probe ``a`` against reference ``b``; pair arrays have shape (R,).

    * ``a_index``, ``b_index``: minutia indices (into ``a`` and ``b``) of each candidate pair;
      the ``R = N_RELAX`` reference minutiae with the best local partners, in index order
      (-1 where ``b`` has fewer than R minutiae; such pairs are not usable).
    * ``usable``: the pair took part (valid cylinders, compatible directions).
    * ``local``: local (cylinder) similarity of the pair, λ0.
    * ``relaxed``: similarity after relaxation (support from geometrically compatible pairs).
    * ``efficiency``: relaxed / local.
    * ``selected``: the ``n_pairs`` pairs averaged into the LSS-R score.
    * ``lssr_score``: mean ``relaxed`` of the selected pairs.
    * ``aligned``, ``overlap``: the alignment check (``kernel.py``, step 5), made on the usable
      pair of highest ``relaxed`` (the first of equal ones): minutiae of ``b`` that land on a
      minutia of ``a``, and that land in ``a``'s area.
    * ``field_agreement``, ``field_blocks``: the orientation fields under the same alignment
      (``kernel.py``, step 6): mean cos 2Δθ over the common foreground blocks, and how many
      (0, 0 when either template has no field).
    * ``field_term``: FIELD_WEIGHT * clip((field_agreement - FIELD_FLOOR) / (1 - FIELD_FLOOR),
      0, 1)² * min(field_blocks / FIELD_FULL_BLOCKS, 1).
    * ``score``: the final score, equal to :func:`matcher.fingerprint.match.score` (a, b):
      (lssr_score + ALIGN_WEIGHT * (aligned / max(overlap, ALIGN_MIN_OVERLAP))² + field_term)
      / (1 + ALIGN_WEIGHT + FIELD_WEIGHT).
    """

    a_index: npt.NDArray[np.int64]
    b_index: npt.NDArray[np.int64]
    usable: npt.NDArray[np.bool_]
    local: npt.NDArray[np.float32]
    relaxed: npt.NDArray[np.float32]
    efficiency: npt.NDArray[np.float32]
    selected: npt.NDArray[np.bool_]
    n_pairs: int
    lssr_score: float
    aligned: int
    overlap: int
    field_agreement: float
    field_blocks: int
    field_term: float
    score: float

    @property
    def pairs(self) -> npt.NDArray[np.int64]:
        """(nP, 2) the (a, b) minutia indices of the selected pairs."""
        return np.stack([self.a_index[self.selected], self.b_index[self.selected]], axis=1)


def _to_source(kept: npt.NDArray[np.int64], idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Prepared-template row -> index into the original template; -1 for padding rows."""
    if kept.size == 0:
        return np.full(idx.shape, -1, np.int64)
    return np.where(idx < kept.size, kept[np.minimum(idx, kept.size - 1)], -1).astype(np.int64)


def explain(a: FingerprintTemplate, b: FingerprintTemplate) -> Explanation:
    """The kernel's intermediates for ``a`` (probe) against ``b``, with the final score."""
    c = consolidate(prepare(a), pack([prepare(b)]))
    return Explanation(
        a_index=_to_source(kept_indices(a), c.probe_index[0]),
        b_index=_to_source(kept_indices(b), c.gallery_index[0]),
        usable=c.usable[0],
        local=c.local[0],
        relaxed=c.relaxed[0],
        efficiency=c.efficiency[0],
        selected=c.selected[0],
        n_pairs=int(c.n_pairs[0]),
        lssr_score=float(c.lssr[0]),
        aligned=int(c.aligned[0]),
        overlap=int(c.overlap[0]),
        field_agreement=float(c.field_agreement[0]),
        field_blocks=int(c.field_blocks[0]),
        field_term=_field_term(float(c.field_agreement[0]), int(c.field_blocks[0])),
        score=float(c.score[0]),
    )


def _field_term(agreement: float, blocks: int) -> float:
    """The orientation term of the score (float64 here; the kernel's is float32)."""
    gain = min(max((agreement - params.FIELD_FLOOR) / (1.0 - params.FIELD_FLOOR), 0.0), 1.0)
    return params.FIELD_WEIGHT * gain * gain * min(blocks / params.FIELD_FULL_BLOCKS, 1.0)
