"""Fast path: synthetic minutiae templates without images, for 10⁴–10⁶ finger galleries.

Per finger (vectorised over blocks of ``TEMPLATE_BLOCK`` fingers): the same layout draw as the
image generator (class, singular points, tilt, silhouette, period); "true" minutiae placed by
random sequential adsorption (a Poisson-disk process: uniform candidates, kept greedily in
random order unless closer than ``TEMPLATE_MIN_SPACING`` ridge periods to one already kept,
computed as a Luby-style maximal independent set in a few whole-array rounds), as many as the
density says; directions along the Sherlock–Monro orientation field with a random sense,
types 50/50. Per impression: pressure crops the contact area, the finger is rotated/translated
onto an FVC-sized image with Cappelli-style skin drag, and the "extractor" is simulated
(position and angle jitter, missed minutiae, type flips, spurious minutiae, border loss).

It reproduces the *statistics* of extracted templates (counts, spacing, direction coherence
with the flow, genuine overlap), not the ridge topology that produced them; see the
"Synthetic data" section of ``benchmarks/README.md`` for the comparison with real extraction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from matcher.fingerprint.template import BIFURCATION, ENDING, FingerprintTemplate
from matcher.synthetic import params as P
from matcher.synthetic.errors import SyntheticParameterError, check_count
from matcher.synthetic.layout import Layout, draw_layouts
from matcher.synthetic.master import check_seed
from matcher.synthetic.orientation import orientation

F64 = npt.NDArray[np.float64]
B_ = npt.NDArray[np.bool_]

#: Candidates per finger for the Poisson-disk draw: ~2.5× the expected count, so the greedy
#: packing (which keeps ≈ 60 % of them at this density) rarely runs short.
CANDIDATES = 176
#: The candidate box exceeds the silhouette's semi-axes by this factor (its wobble reaches 4 %).
BOX_MARGIN = 1.06
#: Spurious-minutia candidates per impression (far above the Poisson mean of TEMPLATE_SPURIOUS).
SPURIOUS_CANDIDATES = 24
#: Minutiae closer than this to the image border are lost (extractors mask the border).
BORDER = 8.0


def _poisson_disk(rng: np.random.Generator, layout: Layout) -> tuple[F64, F64, B_]:
    """True minutiae (B, C) x, y and validity for a block of fingers (master coordinates)."""
    b = layout.batch
    # Candidates in the silhouette's bounding box in the finger frame (~75 % fall inside).
    u = rng.uniform(-1, 1, (b, CANDIDATES)) * layout.semi[:, :1] * BOX_MARGIN
    v = rng.uniform(-1, 1, (b, CANDIDATES)) * layout.semi[:, 1:] * BOX_MARGIN
    c, s = np.cos(layout.flow.tilt)[:, None], np.sin(layout.flow.tilt)[:, None]
    x = layout.flow.centre[:, :1] + c * u - s * v
    y = layout.flow.centre[:, 1:] + s * u + c * v
    eligible = layout.level(x, y) < 1.0
    spacing = (P.TEMPLATE_MIN_SPACING * layout.period[:, None, None]).astype(np.float32)
    xf, yf = x.astype(np.float32), y.astype(np.float32)
    conflict = np.hypot(xf[:, :, None] - xf[:, None, :], yf[:, :, None] - yf[:, None, :]) < spacing
    conflict &= ~np.eye(CANDIDATES, dtype=bool)
    earlier = np.tril(np.ones((CANDIDATES, CANDIDATES), dtype=bool), -1)
    # Batched mat-vecs (BLAS) count conflicting neighbours; boolean reductions would be 5× slower.
    conflict_f = conflict.astype(np.float32)
    earlier_f = (conflict & earlier).astype(np.float32)
    kept = np.zeros_like(eligible)
    while eligible.any():  # rounds (≈ 5–10), each over the whole block
        blocked = (earlier_f @ eligible[:, :, None].astype(np.float32))[..., 0] > 0
        chosen = eligible & ~blocked
        kept |= chosen
        near = (conflict_f @ chosen[:, :, None].astype(np.float32))[..., 0] > 0
        eligible &= ~chosen & ~near
    area = np.pi * layout.semi[:, 0] * layout.semi[:, 1]
    want = rng.poisson(area * P.TEMPLATE_DENSITY)
    rank = np.cumsum(kept, axis=1)
    return x, y, kept & (rank <= want[:, None])


class _Fingers:
    """True minutiae of a block of fingers, (B, C) arrays in master coordinates."""

    def __init__(self, rng: np.random.Generator, batch: int) -> None:
        self.layout = draw_layouts(rng, batch)
        self.x, self.y, self.valid = _poisson_disk(rng, self.layout)
        sense = rng.integers(0, 2, self.x.shape) * np.pi
        self.direction = orientation(self.layout.flow, self.x, self.y) + sense  # image coords
        bif = rng.random(self.x.shape) < P.TEMPLATE_BIFURCATION_FRACTION
        self.kind = np.where(bif, BIFURCATION, ENDING).astype(np.uint8)


def _impressions(
    fingers: _Fingers, rng: np.random.Generator, shape: tuple[int, int], count: int
) -> list[FingerprintTemplate]:
    """One impression of each of the block's first ``count`` fingers (all are simulated, so
    a finger's templates do not depend on how many fingers the caller asked for)."""
    lay = fingers.layout
    b = lay.batch
    h, w = shape
    # Spurious candidates join the true minutiae; everything below is whole-array.
    reach = lay.semi.max(axis=1, keepdims=True)
    sx = lay.flow.centre[:, :1] + rng.uniform(-1, 1, (b, SPURIOUS_CANDIDATES)) * reach
    sy = lay.flow.centre[:, 1:] + rng.uniform(-1, 1, (b, SPURIOUS_CANDIDATES)) * reach
    n_spurious = rng.poisson(P.TEMPLATE_SPURIOUS, (b, 1))
    spurious = np.arange(SPURIOUS_CANDIDATES)[None, :] < n_spurious
    x = np.concatenate([fingers.x, sx], axis=1)
    y = np.concatenate([fingers.y, sy], axis=1)
    n_true = fingers.x.shape[1]
    direction = np.concatenate([fingers.direction, rng.uniform(0, 2 * np.pi, sx.shape)], axis=1)
    kind = np.concatenate([fingers.kind, rng.integers(1, 3, sx.shape).astype(np.uint8)], axis=1)
    keep = np.concatenate(
        [fingers.valid & (rng.random(fingers.x.shape) >= P.TEMPLATE_DROP), spurious], axis=1
    )

    # Pressure: the contact area is the silhouette scaled about a jittered centre.
    centre = lay.flow.centre + rng.uniform(-1, 1, (b, 2)) * P.CONTACT_CENTRE_JITTER
    scale = rng.uniform(*P.PRESSURE_SCALE, (b, 1))
    cx, cy = centre[:, :1], centre[:, 1:]
    keep &= lay.level((x - cx) / scale + cx, (y - cy) / scale + cy) < 1.0

    # Skin drag beyond the close region (Cappelli), then rigid placement on the sensor.
    rx, ry = x - cx, y - cy
    close = rng.uniform(*P.DISTORTION_CLOSE_RADIUS, (b, 1))
    width = rng.uniform(*P.DISTORTION_BRAKE_WIDTH, (b, 1))
    t = np.clip((np.hypot(rx, ry) - close) / width, 0.0, 1.0)
    brake = t * t * (3 - 2 * t)
    d_angle = rng.uniform(-1, 1, (b, 1)) * P.DISTORTION_ROTATION
    d_shift = rng.uniform(-1, 1, (b, 2)) * P.DISTORTION_TRANSLATION
    dc, ds = np.cos(d_angle), np.sin(d_angle)
    rx2 = rx + brake * (dc * rx - ds * ry + d_shift[:, :1] - rx)
    ry2 = ry + brake * (ds * rx + dc * ry + d_shift[:, 1:] - ry)
    angle = rng.uniform(-1, 1, (b, 1)) * P.ROTATION_MAX
    shift = rng.uniform(-1, 1, (b, 2)) * P.TRANSLATION_MAX
    c, s = np.cos(angle), np.sin(angle)
    jitter = rng.normal(0, P.TEMPLATE_POSITION_JITTER, (2, *x.shape))
    qx = c * rx2 - s * ry2 + (w - 1) / 2.0 + shift[:, :1] + jitter[0]
    qy = s * rx2 + c * ry2 + (h - 1) / 2.0 + shift[:, 1:] + jitter[1]
    rotation = angle + brake * d_angle
    direction = direction + rotation + rng.normal(0, P.TEMPLATE_ANGLE_JITTER, x.shape)
    iso = np.mod(-direction, 2 * np.pi)  # ISO: counter-clockwise with y up
    iso = np.where(iso >= 2 * np.pi, 0.0, iso)
    keep &= (qx >= BORDER) & (qx < w - BORDER) & (qy >= BORDER) & (qy < h - BORDER)
    flip = (rng.random(x.shape) < P.TEMPLATE_TYPE_FLIP) & (np.arange(x.shape[1]) < n_true)
    kind = np.where(flip, np.uint8(3) - kind, kind).astype(np.uint8)
    quality = rng.integers(P.TEMPLATE_QUALITY[0], P.TEMPLATE_QUALITY[1] + 1, x.shape)
    quality = np.where(np.arange(x.shape[1]) >= n_true, quality // 2, quality).astype(np.uint8)
    image_quality = rng.integers(P.TEMPLATE_IMAGE_QUALITY[0], P.TEMPLATE_IMAGE_QUALITY[1] + 1, b)
    out = []
    for i in range(count):  # builds the result objects; all arithmetic happened above
        k = keep[i]
        out.append(
            FingerprintTemplate(
                x=qx[i, k].astype(np.float32),
                y=qy[i, k].astype(np.float32),
                angle=iso[i, k].astype(np.float32),
                kind=kind[i, k],
                quality=quality[i, k],
                width=w,
                height=h,
                image_quality=int(image_quality[i]),
            )
        )
    return out


def synthetic_templates(
    n_fingers: int,
    impressions: int,
    seed: int = 0,
    *,
    shape: tuple[int, int] = P.IMPRESSION_SHAPE,
) -> list[list[FingerprintTemplate]]:
    """``n_fingers`` × ``impressions`` templates: ``result[f][i]`` is impression i of finger f.

    Deterministic in ``seed``; finger ``f``'s templates do not depend on ``n_fingers`` (fingers
    are drawn in fixed blocks, each from its own ``SeedSequence``). ``shape`` (H, W) is the
    simulated image size at 500 ppi.
    """
    n = check_count(n_fingers, "n_fingers")
    m = check_count(impressions, "impressions")
    seed = check_seed(seed)
    h, w = (int(v) for v in shape)
    if h < 64 or w < 64:
        raise SyntheticParameterError(
            "template image shape must be at least 64x64", reason="bad_shape"
        )
    result: list[list[FingerprintTemplate]] = []
    block = P.TEMPLATE_BLOCK
    for start in range(0, n, block):
        b = min(block, n - start)
        finger_ss, *impression_ss = np.random.SeedSequence([seed, start // block]).spawn(1 + m)
        fingers = _Fingers(np.random.default_rng(finger_ss), block)
        per_impression = [
            _impressions(fingers, np.random.default_rng(ss), (h, w), b) for ss in impression_ss
        ]
        result.extend([per_impression[j][i] for j in range(m)] for i in range(b))
    return result
