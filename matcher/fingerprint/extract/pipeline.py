"""The extraction pipeline: image -> FingerprintTemplate, one stage per module.

validate -> resample (500 ppi) -> normalize -> orientation -> segmentation -> frequency
-> Gabor enhancement -> orientation refined on the enhanced image -> Gabor enhancement again
-> binarisation -> thinning -> minutiae -> filtering -> quality; the coarse orientation field
(``template.field_codes``) travels with the template.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matcher.errors import QualityError
from matcher.fingerprint.extract import params as P
from matcher.fingerprint.extract.binarization import binarize
from matcher.fingerprint.extract.enhancement import GaborBank, enhance
from matcher.fingerprint.extract.filtering import border_distance, keep_mask
from matcher.fingerprint.extract.frequency import ridge_period
from matcher.fingerprint.extract.minutiae import Minutiae, detect
from matcher.fingerprint.extract.normalize import normalize
from matcher.fingerprint.extract.orientation import orientation_field, refine_orientation
from matcher.fingerprint.extract.quality import image_quality, minutia_quality
from matcher.fingerprint.extract.resample import to_working_resolution, validate
from matcher.fingerprint.extract.segmentation import segment
from matcher.fingerprint.extract.thinning import thin
from matcher.fingerprint.template import FingerprintTemplate, field_codes

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Stages:
    """Intermediate results, for inspection and tests; all (H, W) at 500 ppi."""

    image: npt.NDArray[np.uint8]
    normalized: F32
    theta: F32
    coherence: F32
    mask: Mask
    period: F32
    enhanced: F32
    ridges: Mask
    skeleton: Mask
    candidates: Minutiae
    template: FingerprintTemplate


def run(image: object, *, ppi: float = 500.0, finger_position: int = 0) -> Stages:
    """Run every stage on a (H, W) uint8 image (ridges dark) and keep the intermediates."""
    img = to_working_resolution(validate(image), ppi)
    norm = normalize(img)
    field = orientation_field(norm)
    mask = segment(img, field.coherence)
    if int(mask.sum()) < P.SEG_MIN_AREA:
        raise QualityError(
            f"ridge area of {int(mask.sum())} pixels is below the {P.SEG_MIN_AREA} needed "
            "(blank, flat or featureless image)",
            reason="no_ridge_area",
        )
    period, med = ridge_period(norm, mask)
    bank = GaborBank(norm.shape, med)
    enhanced = enhance(norm, field.theta, period, bank)
    if P.ORIENT_REFINE_WEIGHT > 0:
        field = refine_orientation(field, enhanced)
        # Binarisation reads the foreground only: the second pass filters nothing else.
        enhanced = enhance(norm, field.theta, period, bank, where=mask)
    ridges = binarize(enhanced, mask)
    skeleton = thin(ridges)
    cand = detect(skeleton, field.theta)
    dist = border_distance(mask)
    keep = keep_mask(cand, dist, field.coherence)
    found = cand.take(keep)
    quality = minutia_quality(found.x, found.y, field.coherence, dist)
    if len(found.x) < P.MIN_MINUTIAE:
        raise QualityError(
            f"only {len(found.x)} reliable minutiae found; at least {P.MIN_MINUTIAE} are needed",
            reason="too_few_minutiae",
        )
    if len(found.x) > P.MAX_MINUTIAE:
        best = np.argsort(-quality.astype(np.int32), kind="stable")[: P.MAX_MINUTIAE]
        found, quality = found.take(best), quality[best]
    h, w = img.shape
    template = FingerprintTemplate(
        x=found.x.astype(np.float32),
        y=found.y.astype(np.float32),
        angle=found.angle,
        kind=found.kind,
        quality=quality,
        width=w,
        height=h,
        resolution_ppi=int(P.TARGET_PPI),
        image_quality=image_quality(mask, field.coherence),
        finger_position=finger_position,
        orientation=field_codes(field.theta, mask, P.FIELD_MIN_FOREGROUND),
    )
    return Stages(
        img, norm, field.theta, field.coherence, mask, period, enhanced, ridges, skeleton, cand,
        template,
    )  # fmt: skip
