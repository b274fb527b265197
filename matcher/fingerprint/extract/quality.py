"""Stage 11: per-minutia quality (1–100) and image quality (0–100).

Image quality means: the share of a full plain impression that is covered by clear ridges.
It is ``100 × good × coverage`` where ``good`` is the fraction of foreground pixels whose
orientation coherence exceeds QUAL_GOOD_COHERENCE (ridges clearly parallel, in the spirit
of NFIQ's local-clarity features) and ``coverage`` is min(1, foreground area / QUAL_FULL_AREA).
About 60+ is a good plain impression; under 20 rarely matches.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from matcher.fingerprint.extract import params as P

F32 = npt.NDArray[np.float32]


def minutia_quality(
    x: npt.NDArray[np.int32], y: npt.NDArray[np.int32], coherence: F32, dist: F32
) -> npt.NDArray[np.uint8]:
    """Quality (n,) uint8 in 1..100 from local coherence and distance to the foreground edge."""
    coh = coherence[y, x]
    c = np.clip(
        (coh - P.QUAL_COHERENCE_LOW) / (P.QUAL_COHERENCE_HIGH - P.QUAL_COHERENCE_LOW), 0.0, 1.0
    )
    b = np.clip(dist[y, x] / P.QUAL_BORDER_FULL, 0.0, 1.0)
    q = np.sqrt(c * b)  # geometric mean: either weakness alone pulls quality down
    return np.clip(np.round(1 + 99 * q), 1, 100).astype(np.uint8)


def image_quality(mask: npt.NDArray[np.bool_], coherence: F32) -> int:
    """Image quality 0..100 (see the module docstring) of a foreground mask and coherence."""
    area = int(mask.sum())
    if area == 0:
        return 0
    good = float((coherence[mask] > P.QUAL_GOOD_COHERENCE).mean())
    coverage = min(1.0, area / P.QUAL_FULL_AREA)
    return int(np.clip(round(100 * good * coverage), 0, 100))
