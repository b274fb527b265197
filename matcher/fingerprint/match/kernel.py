"""The batch comparison kernel: one probe against a packed block of ``nb`` templates.

Shapes: probe ``mp`` minutiae; block ``nb`` templates of ``M`` rows; ``d`` descriptor length;
``R = params.N_RELAX`` candidate pairs per template.

1. Local similarities, one GEMM: gallery rows (nb*M, d) @ probe (d, mp). Descriptors hold small
   integers, so the product is exact in float32 whatever the BLAS summation order. Each value
   times both inverse norms is the cosine similarity of two cylinders.
2. Each gallery minutia keeps its best probe partner (argmax over the probe axis); partners
   whose directions differ by more than MAX_DIRECTION_DIFF are dropped (MCC's δθ).
3. The R gallery minutiae with the best partners are relaxed (MCC's LSS-R): pair compatibilities
   (nb, R, R) from distance, relative rotation and radial angle; RELAX_ITERATIONS updates.
4. LSS-R score: mean relaxed similarity of the nP pairs whose similarity the relaxation kept
   best (efficiency = relaxed / initial), nP growing with the smaller minutia count.
5. Alignment check: the gallery template turned and shifted onto the probe by the pair of
   highest relaxed similarity; ``aligned`` gallery minutiae land on a probe minutia (position
   and direction, each probe minutia once), ``overlap`` land in the probe's area. Score =
   (LSS-R score + ALIGN_WEIGHT * (aligned / max(overlap, ALIGN_MIN_OVERLAP))² + field term) /
   (1 + ALIGN_WEIGHT + FIELD_WEIGHT), in [0, 1] (params.py says why).
6. Field term, under the same alignment: the mean cos 2Δθ of the two orientation fields over
   the gallery's foreground blocks that land on the probe's foreground (``agreement``, over
   ``field_blocks`` blocks), FIELD_WEIGHT * clip((agreement - FIELD_FLOOR) / (1 -
   FIELD_FLOOR), 0, 1)² * min(field_blocks / FIELD_FULL_BLOCKS, 1); 0 when either template
   has no field.

Differences from MCC, all for batch speed: cylinders are coarser (128 values, see params);
local similarity is the cosine of the integer cylinders (one GEMM) rather than MCC's normalised
Euclidean distance over commonly valid cells; candidates are per-reference-row best partners,
a fixed R of them, rather than a sort of the whole similarity matrix (measured: same accuracy,
one argmax pass instead of a partition per template). Scores are invariant to translation and
to rotation up to MAX_DIRECTION_DIFF (±90°).

Step 1 is numpy's GEMM; steps 2–5 are compiled per template (``consolidation.py``: in numpy
they were ~60 whole-array passes that cost more than the GEMM). They work on one template's
rows with fixed-length loops and deterministic, index-ordered tie-breaking, so a template's
score does not depend on the other templates of the block, on the block size or on the
padding ``M``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matcher.fingerprint.match import consolidation, params, products
from matcher.fingerprint.match.types import (
    PackedTemplates,
    SearchTemplate,
    check_packed,
    check_search_template,
    descriptor_length,
    pack,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Consolidation:
    """Every intermediate of the kernel for a block; arrays (nb, R) unless noted.

    ``probe_index``/``gallery_index``: minutia indices of each candidate pair; ``usable``: pair
    took part (real, valid cylinders, compatible directions); ``local``: initial (local)
    similarity λ0; ``relaxed``: λ after relaxation; ``efficiency``: relaxed / local;
    ``selected``: the pairs averaged into the LSS-R score; ``n_pairs`` (nb,): nP; ``score``
    (nb,); ``aligned``, ``overlap`` (nb,): the alignment check's counts (step 5); ``lssr``
    (nb,): the LSS-R part of the score; ``field_agreement`` (nb,) float32, ``field_blocks``
    (nb,): the orientation fields' mean cos 2Δθ and common blocks (step 6; 0 without fields).
    """

    probe_index: I64
    gallery_index: I64
    usable: npt.NDArray[np.bool_]
    local: F32
    relaxed: F32
    efficiency: F32
    selected: npt.NDArray[np.bool_]
    n_pairs: I64
    score: F32
    aligned: I64
    overlap: I64
    lssr: F32
    field_agreement: F32
    field_blocks: I64


def _sigmoid(v: npt.NDArray[np.floating], mu: float, tau: float) -> npt.NDArray[np.floating]:
    """MCC's Z(v, μ, τ) = 1 / (1 + exp(-τ (v - μ)))."""
    # exp may overflow to inf for far-off values: the sigmoid is then exactly 0, as intended.
    with np.errstate(over="ignore"):
        return np.asarray(1.0 / (1.0 + np.exp(np.float32(-tau) * (v - np.float32(mu)))))


#: nP for every possible smaller minutia count 0..MAX_MINUTIAE (a table, so that no per-template
#: transcendental function runs on arrays of varying length).
_N_PAIRS = (
    params.MIN_NP
    + np.rint(
        _sigmoid(np.arange(params.MAX_MINUTIAE + 1, dtype=np.float64), params.MU_P, params.TAU_P)
        * (params.MAX_NP - params.MIN_NP)
    )
).astype(np.int64)


def consolidate(probe: SearchTemplate, gallery: PackedTemplates) -> Consolidation:
    """Run the whole kernel and keep every intermediate (see :class:`Consolidation`)."""
    check_search_template(probe)
    check_packed(gallery)
    return _consolidate(probe, gallery)


def _alignment_grid(probe: SearchTemplate) -> consolidation.Grid:
    """The probe's grid for the alignment check (``consolidation.probe_grid``), built on first
    use and kept on the probe: a search scores one probe in many calls (groups, sub-blocks,
    shards), and building the grid costs as much as aligning ~100 templates."""
    grid: consolidation.Grid | None = probe.__dict__.get("_alignment_grid")
    if grid is None:
        grid = consolidation.probe_grid(
            np.ascontiguousarray(probe.geometry), probe.count, consolidation.FLOAT_CONSTANTS
        )
        object.__setattr__(probe, "_alignment_grid", grid)  # a cache: the probe stays as it was
    return grid


def _consolidate(probe: SearchTemplate, gallery: PackedTemplates) -> Consolidation:
    nb, m, d = gallery.descriptors.shape
    if probe.count:
        # Step 1: (nb*M, mp) integer dot products, exact in float32 (see above), by BLAS or
        # on VNNI from uint8 rows (then mp_pad wide; columns past mp are never read).
        prod = products.products(gallery.descriptors.reshape(nb * m, d), probe)
        arrays: consolidation.Probe = (
            np.ascontiguousarray(probe.inv_norm),
            np.ascontiguousarray(probe.geometry),
            probe.count,
        )
    else:  # every row is unusable
        prod = np.zeros((nb * m, 1), np.float32)
        arrays = (np.zeros(1, np.float32), np.zeros((1, 4), np.float32), 0)
    grid = _alignment_grid(probe)
    p_field = consolidation.NO_FIELD if probe.field is None else probe.field
    g_field = gallery.field
    if g_field is None or g_field.shape[1] == 0 or g_field.shape[2] == 0:
        g_field = np.broadcast_to(consolidation.NO_FIELD, (nb, 1, 1))
    if p_field.shape[0] == 0 or p_field.shape[1] == 0:
        p_field = consolidation.NO_FIELD
    out = consolidation.empty_outputs(nb)
    # Contiguous arrays only, so the compiled code has one specialisation to compile or load.
    consolidation.post_gemm(
        prod,
        m,
        arrays,
        grid,
        np.ascontiguousarray(gallery.inv_norm),
        np.ascontiguousarray(gallery.geometry),
        gallery.counts.astype(np.int64),
        _N_PAIRS,
        consolidation.FLOAT_CONSTANTS,
        consolidation.INT_CONSTANTS,
        (np.ascontiguousarray(p_field), np.ascontiguousarray(g_field)),
        consolidation.FIELD_COS,
        consolidation.FIELD_SIN,
        out,
    )
    return Consolidation(*out)


def score_many(probe: SearchTemplate, gallery: PackedTemplates) -> F32:
    """Similarity in [0, 1] of ``probe`` to each template of ``gallery``: (nb,) float32.

    Runs the kernel over sub-blocks of ``params.CHUNK_TEMPLATES`` templates so that every
    intermediate array stays in cache (scores do not depend on the split).
    """
    check_search_template(probe)
    check_packed(gallery)
    nb = len(gallery)
    step = params.CHUNK_TEMPLATES
    if nb <= step:
        return _consolidate(probe, gallery).score
    out = np.empty(nb, np.float32)
    for s in range(0, nb, step):
        part = PackedTemplates(
            gallery.descriptors[s : s + step],
            gallery.inv_norm[s : s + step],
            gallery.geometry[s : s + step],
            gallery.counts[s : s + step],
            gallery.format,
            gallery.version,
            None if gallery.field is None else gallery.field[s : s + step],
        )
        out[s : s + step] = _consolidate(probe, part).score
    return out


def warm_up() -> None:
    """Compile (first run after install: seconds) or load from numba's on-disk cache the kernel's
    compiled stage, so that a server's first query does not pay for it."""
    probe = SearchTemplate(
        np.ones((1, descriptor_length()), np.float32),
        np.ones(1, np.float32),
        np.zeros((1, 4), np.float32),
    )
    score_many(probe, pack([probe]))
    products.warm_up()
