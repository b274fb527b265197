"""Tunables of the fingerprint matcher, each with the reason for its value.

The design follows Minutia Cylinder-Code (MCC; Cappelli, Ferrara, Maltoni, IEEE PAMI 32(12),
2010) with LSS-R consolidation (local similarity sort + relaxation), changed where batch
scoring needs it (see ``kernel.py``). Distances are pixels at 500 ppi, angles radians.

"Measured" figures are mean EERs (cross-finger impostors) over FVC2002 DB1–DB4 B sets, with
the extractor of ``matcher.fingerprint.extract`` as it stood on 2026-11-23, one parameter
varied at a time from the then-current setting. They compare settings with each other; the
final accuracy is in benchmarks/README.md ("Fingerprint matching"). The extractor was still
changing during tuning, so figures in different comments are not from identical templates.
"""

from __future__ import annotations

import math

from matcher.fingerprint import template

# --- Cylinders (local descriptors) -------------------------------------------------------------

#: Cylinder radius. MCC default (70 px at 500 ppi, about 7 ridges): large enough to be
#: distinctive, small enough to stay stable under skin distortion.
RADIUS = 70.0
#: Spatial cells along the cylinder diameter. MCC uses 16 (8.75 px cells); the batch kernel's
#: cost is a GEMM linear in the descriptor length, so we keep the 32 in-circle cells of a 6x6
#: grid (23.3 px cells) and widen the spatial Gaussian to match (SIGMA_S).
NS = 6
#: Angular sections. MCC uses 6; 4 (90° each) gives a 32 * 4 = 128-long descriptor. On FVC2002
#: an 8x8 grid with 5 sections (260 values, twice the GEMM cost) or 6 sections measured the
#: same mean EER (5.0%).
ND = 4
#: Spatial contribution spread (MCC: 28/3 px for 8.75 px cells). Measured on FVC2002 DB1-4
#: (mean EER): 8 px 5.63%, 10 px 5.00%, 12 px 5.97%, 14 px 7.12%.
SIGMA_S = 10.0
#: Directional contribution spread. MCC default 2π/9 (40°).
SIGMA_D = 2.0 * math.pi / 9.0
#: Sigmoid Ψ turning summed contributions into cell values. Contributions here are
#: exp(-d²/2σS²) (peak 1) times the probability mass of the direction difference falling in
#: the section, so MCC's μΨ = 0.01, τΨ = 400 (for the pdf-normalised Gaussian of σ = 28/3)
#: become μΨ = 0.01·(28/3)·√(2π) ≈ 0.23 and τΨ = 400/((28/3)·√(2π)) ≈ 17: a cell saturates
#: once about one well-placed neighbour contributes.
MU_PSI = 0.01 * (28.0 / 3.0) * math.sqrt(2.0 * math.pi)
TAU_PSI = 400.0 / ((28.0 / 3.0) * math.sqrt(2.0 * math.pi))
#: Neighbours further than this from a cell centre contribute nothing (3σ: <1.2% of the peak).
NEIGHBOUR_CUTOFF = 3.0 * SIGMA_S
#: Cells further than this outside the convex hull of the minutiae are invalid (value 0).
#: MCC's ω = 50 px.
HULL_MARGIN = 50.0
#: A cylinder is invalid (similarity 0 to everything) when fewer than this many other minutiae
#: lie within RADIUS + NEIGHBOUR_CUTOFF (MCC's minM = 2) ...
MIN_NEIGHBOURS = 2
#: ... or when fewer than this fraction of its cells are valid (MCC's minVC = 75%, relaxed to
#: 60% for the coarse grid, where each border cell weighs more).
MIN_VALID_CELLS = 0.60
#: Cell values are quantised to integers 0..QUANT_LEVELS and kept as float32. Every product
#: and partial sum of a dot product is then an integer below 2**24, so the GEMM is exact in
#: float32 in any summation order: the score cannot depend on the block size, the BLAS kernel
#: or the other templates of a block. 15 levels (4 bits) lose nothing measurable: MCC's
#: 1-bit variant is already close to the float one.
QUANT_LEVELS = 15

# --- Pair selection and relaxation (LSS-R) -----------------------------------------------------

#: Candidate pairs kept for relaxation (each gallery minutia's best probe partner, the top
#: N_RELAX of those). MCC's LSS-R relaxes min(nA, nB) pairs; a fixed 16 keeps the O(N_RELAX²)
#: compatibility step, the kernel's largest cost after the GEMM, cheap. On FVC2002 it is also
#: the most accurate: 12 -> mean EER 5.50%, 16 -> 5.26%, 20 -> 5.97%, 24 -> 5.99% (more
#: candidates let impostors assemble chance structure).
N_RELAX = 16
#: Relaxation iterations and weight. MCC: nrel = 5, wR = 0.5. 8 iterations let support spread
#: further through sparse templates (FVC2002 with this extractor: mean EER over DB1-4 5.26% ->
#: 5.09%; 12 iterations change nothing more).
RELAX_ITERATIONS = 8
RELAX_WEIGHT = 0.5
#: Pair compatibility ρ: product of three sigmoids (MCC defaults unless said). d1: difference of
#: the distances between the two minutiae in each template (px): τ = -8/5 as MCC, μ = 9 (MCC 5):
#: more tolerance for skin distortion (FVC2002 mean EER 5.09% -> 4.91% for μ 5 -> 7). With the
#: extractor of 2026-12-02 (border margin 8), mean EER / mean rank-1:
#: μ 7 -> 4.11% / 96.3%, 9 -> 3.95% / 96.4% (DB2 3.22 -> 2.85%,
#: DB4 6.07 -> 5.79%, DB1 and DB3 unchanged; but mean FNMR at FMR 1% / 0.1% 6.25 -> 6.5% /
#: 9.35 -> 9.73%, a pair or two, i.e. noise either way), 11 -> 4.19%; with the border margin at
#: 12: 5 -> 4.29%, 7 -> 4.30%, 9 -> 4.20%. A distance-relative tolerance (μ + k × mean
#: length, k = 0.05-0.15) measured 4.11-4.37%: no better than the fixed one.
MU_RHO_DIST = 9.0
TAU_RHO_DIST = -8.0 / 5.0
#: d2: difference of the relative rotations of the two pairs: MCC's μ = π/12, τ = -30, with
#: the angle measured as a chord 2 sin(θ/2) (the kernel avoids trigonometry; equal to θ
#: within 1% in the range where the sigmoid moves).
MU_RHO_ROT = 2.0 * math.sin(math.pi / 24.0)
TAU_RHO_ROT = -30.0
#: d3: difference of the directions of the connecting segment seen from each minutia (same).
MU_RHO_RADIAL = 2.0 * math.sin(math.pi / 24.0)
TAU_RHO_RADIAL = -30.0
#: Compatibilities below this are set to 0 before the relaxation. The reciprocal of a product
#: of three large sigmoid denominators can land in float32's subnormal range (below 1.2e-38),
#: where every multiply is ~100x slower: on a 512-template block 0.6% of ρ was subnormal and the
#: relaxation took 1.08 ms instead of 0.32 ms. A compatibility of 1e-6 moves a relaxed
#: similarity by at most N_RELAX * 1e-6, far below any score difference that matters.
RHO_FLUSH = 1e-6
#: Pairs whose minutia directions differ by more than this cannot match (MCC's δθ = π/2). So
#: scores are invariant to rotations up to ±90° (every plausible finger placement) and a
#: finger turned further does not match. Measured on FVC2002 (cached templates, all four DBs):
#: dropping the limit raises FNMR at FMR = 0.1% on DB1 from 4.3% to 9.6%.
MAX_DIRECTION_DIFF = math.pi / 2.0
#: Number of pairs averaged into the final score: nP = MIN_NP + round(Z(min(nA, nB), μP, τP) *
#: (MAX_NP - MIN_NP)); MCC: minNP = 4, maxNP = 12, μP = 20, τP = 2/5. Our extractor keeps fewer,
#: surer minutiae (median 19-35 per FVC2002 image), so 3..10 pairs (mean EER 5.54% -> 5.26%).
MIN_NP = 3
MAX_NP = 10
MU_P = 20.0
TAU_P = 2.0 / 5.0

# --- Alignment check (fused with the LSS-R score) ---------------------------------------------

#: LSS-R looks only at the R = N_RELAX pairs whose cylinders agree best, and averages nP of them,
#: nP growing with the smaller minutia count. Two impressions with little common area (FVC2002's
#: exaggerated displacement) have few such pairs, and their mean drowns in the template sizes:
#: every rank-1 miss scored at impostor level. The kernel therefore also turns and shifts the
#: gallery template onto the probe by the pair that the relaxation supports most (the highest
#: relaxed λ), counts the gallery minutiae that land on a probe minutia (``aligned``; each
#: probe minutia pairs once) and those that land in the probe's area at all (``overlap``), and
#: scores
#: (LSS-R + ALIGN_WEIGHT * (aligned / max(overlap, ALIGN_MIN_OVERLAP))²) / (1 + ALIGN_WEIGHT):
#: the share of the common area that agrees, whatever the templates' sizes. FVC2002 DB1-4 B
#: (templates of the 2026-12-02 extractor; EER / rank-1 per set, means; cross-finger
#: impostors): LSS-R alone 1.78/98.8, 2.85/98.0, 6.07/93.9, 4.28/96.4% (means 3.75% / 96.79%);
#: with the term 1.07/99.1, 1.78/98.4, 4.56/95.0, 3.93/96.4% (means 2.83% / 97.23%; FNMR at
#: FMR 1% 6.07 -> 4.6%). The term alone is a weaker matcher (4.56% / 95.36%): the two see
#: different evidence (cylinder agreement of a few pairs against the share of all minutiae
#: placed right). Measured in numpy before it was compiled, with an exact nearest-neighbour
#: search instead of the grid: one-to-one pairing against any-neighbour 2.77% / 97.37% against
#: 2.93% / 97.19%;
#: normalising by both sides' overlap counts, aligned² / (overlap_a * overlap_b), 3.02% /
#: 97.37%; aligned / overlap (linear) 2.76% / 97.28%, cubed 2.79% / 97.32%; the LSS-R mean
#: times (1 + 3 * share²) 3.13%; nP taken from the overlap count instead of the template sizes,
#: without the term, 3.59-3.74%; the term only for pairs whose LSS-R score passes 0.002 /
#: 0.003, to save work (3 refitted seeds, two-sided normalisation: 2.95% / 97.77% for all
#: pairs, 2.96% / 97.59% and 3.29% / 97.37% gated: the genuine pairs that need the term score
#: below half the impostors). More seeds: the 2 best pairs (max of the shares) 2.71% /
#: 97.63%, the 3 best 2.87% / 97.59%, the 3 best each with a least-squares refit 2.94% /
#: 97.50%, exhaustive over all minutia pairs (Hough-like, two-sided overlap) 2.79-3.03% /
#: 97.46-97.68%: each extra seed costs another ~1% of the kernel's rate.
#: Each gallery minutia costs a transform and one look-up in a grid of the probe built once per
#: probe (``consolidation.probe_grid``): the cell's probe minutia nearest its centre is the one
#: tested (exact but for the rare gallery minutia whose cell centre lies nearer another probe
#: minutia). Compiled first without the one-to-one rule (a data-dependent store per minutia):
#: 2.83% / 97.23% on those templates, and with the extractor of 2026-12-05 (BORDER_MARGIN 6,
#: BREAK_MAX_DISTANCE 14) 2.49% / 97.88%; with it 2.86% / 97.28% and 2.24% / 97.95% (DB4 EER
#: 3.17 -> 2.50%, DB1 1.00 -> 0.72%; the numpy prototype: 2.23% / 97.95%), at ~1% of the
#: kernel's rate (same-process A/B against the LSS-R-only kernel of 44c3999, 0.95 and 0.96).
#: Around the kept values on those templates, one at a time (mean EER / mean rank-1; kept:
#: 2.24% / 97.95%): ALIGN_WEIGHT 0.02 / 0.05 -> 2.32% / 97.95%, 2.39% / 97.99%;
#: ALIGN_MIN_OVERLAP 8 / 12 -> 2.30% / 97.77%, 2.42% / 97.90%; ALIGN_DISTANCE 10 / 14 px ->
#: 2.50% / 97.95%, 2.56% / 97.81%; ALIGN_OVERLAP 30 / 50 px -> 2.65% / 97.81%, 2.50% /
#: 97.86%; a distance tolerance growing with the distance from the seed (skin distortion),
#: 10 px + 0.02 / 0.04 per px, 8 + 0.04, 12 + 0.02 -> 2.50, 2.23, 2.32, 2.27%; the seed taken
#: as the pair of best local similarity or of best efficiency instead of best relaxed λ
#: (numpy) -> 2.74% / 98.04%, 2.59% / 97.77% (best λ there: 2.23% / 97.95%). With the term,
#: LSS-R's MIN_NP 2 / 4 -> 2.27%, 2.40%; MAX_NP 8 / 12 -> 2.26%, 2.34%: nothing to re-tune.
#:
#: A gallery minutia is aligned within this distance (px) of its probe minutia. 10 px: 2.95% /
#: 97.46%, 12 px: 2.77% / 97.37%, 15 px: 3.21% / 97.46% (numpy, weight 0.03, floor 10).
ALIGN_DISTANCE = 12.0
#: ... and this direction difference (π/8, 22.5°; π/6: 2.84% / 97.41%).
ALIGN_ANGLE = math.pi / 8.0
#: A gallery minutia lies in the probe's area when the centre of its grid cell lies within this
#: distance (px) of a probe minutia (about four ridges). 30 px: 3.04% / 97.41%, 50 px: 2.78% /
#: 97.37%.
ALIGN_OVERLAP = 40.0
#: Floor of the overlap count, so that a chance alignment of two or three minutiae in a sliver
#: of common area does not score as a full agreement. 8: 2.76% / 97.23%, 12: 2.96% / 97.46%.
ALIGN_MIN_OVERLAP = 10
#: Weight of the term against the LSS-R mean (whose genuine medians are 0.09-0.39 on FVC2002
#: and whose impostor 99th percentile is 0.005-0.009). 0.02: 2.94% / 97.41%, 0.05: 2.94% /
#: 97.23%.
ALIGN_WEIGHT = 0.03
#: Cell side (px) of the probe grid: the nearest-to-centre approximation errs by at most half
#: a diagonal (2.8 px); the grid of a 300 x 400 px probe holds ~10,000 int32 cells (40 KB,
#: cache-resident) and costs ~40 µs to build, once per probe.
ALIGN_CELL = 4.0
#: The grid is at most about this many cells across: minutiae spread wider than
#: ALIGN_GRID_SIDE * ALIGN_CELL (1,600 px, the extractor's largest image) get wider cells, so a
#: template with absurd coordinates (ISO allows 16,383 px) cannot make the grid huge.
ALIGN_GRID_SIDE = 400

# --- Orientation-field agreement (fused into the score) ----------------------------------------
#
# Templates may carry a coarse orientation field (``FingerprintTemplate.orientation``: one
# angle code per FIELD_BLOCK px block, 255 outside the foreground). Under the alignment the
# check above found (the most supported pair as seed), each foreground block of the gallery
# template is turned and shifted onto the probe; where its centre lands on a foreground block
# of the probe, cos 2Δθ of the two orientations (gallery turned by the alignment's rotation)
# counts. a = the mean over those common blocks; the score gains
# FIELD_WEIGHT * clip((a - FIELD_FLOOR) / (1 - FIELD_FLOOR), 0, 1)² * min(blocks /
# FIELD_FULL_BLOCKS, 1) and is divided by (1 + ALIGN_WEIGHT + FIELD_WEIGHT), so it stays in
# [0, 1]. When either template has no field, or no seed aligns them, the term is 0 (neutral:
# the score is the minutiae score times (1 + ALIGN_WEIGHT) / (1 + ALIGN_WEIGHT + FIELD_WEIGHT),
# and the FMR table, measured on templates with fields, is conservative for such records).
#
# Why: on FVC2002's rank-1 misses the genuine and the best impostor entries align as many
# minutiae, while the flow of the ridges separates them: under the kernel's alignment, the
# genuine median of a is 0.97-0.98 (10th percentile 0.92-0.96) on DB1-DB4 against an impostor
# median of 0.42-0.54 (99th percentile 0.90-0.94). Prototype (benchmarks/fingerprint_misses.py
# "of1", benchmarks/README.md, "Rank-1 misses of DB1 and DB2 revisited"): EER DB1-DB4 0.72 /
# 1.46 / 4.28 / 2.50% -> 0.72 / 1.43 / 3.57 / 1.43%, rank-1 misses 5 / 8 / 22 / 11 -> 4 / 5 /
# 17 / 8, and on a synthetic set 0.93% / 12 -> 0.85% / 10. The values below are the
# prototype's defaults, chosen before it ran: every weight 0.003-0.03 with floor 0.5-0.7, and
# blocks of 8 or 24 px, lowered the EER of DB2-DB4 and the misses of every set, i.e. the grid
# is flat around them and nothing here is fitted to the sets. The best-of-four-seeds variant
# (of4) gained more on DB2-DB3 but needs three more alignments per template (~70% of the
# kernel's time against ~15% for this one); not done.
#
#: Weight of the term, against LSS-R (genuine medians 0.09-0.39, impostor 99th percentile
#: 0.005-0.009) and ALIGN_WEIGHT: a perfect flow agreement over a full overlap adds 0.01, about
#: the impostor 99.9th percentile, so it can lift a genuine pair lost among impostors but not
#: carry an impostor whose minutiae do not agree (impostors reach a > 0.9 at 1%).
FIELD_WEIGHT = 0.01
#: Agreement below this counts nothing: impostors of the same pattern class agree at 0.4-0.6
#: (the median) on the flow's broad shape alone; genuine pairs sit above 0.9.
FIELD_FLOOR = 0.7
#: Common blocks for the full weight (fewer scale it down linearly): 100 blocks of 16 px are
#: ~25,600 px², about a third of a plain FVC impression's foreground (190-283 blocks), so a
#: sliver of overlap cannot carry a full-weight agreement.
FIELD_FULL_BLOCKS = 100
#: Block side (px at 500 ppi): the template's (``matcher.fingerprint.template.FIELD_BLOCK``,
#: two ridge periods; 1 byte a block). The kernel reads it from here.
FIELD_BLOCK = template.FIELD_BLOCK

# --- Resolution ---------------------------------------------------------------------------------

#: Every distance above is in pixels of a 500 ppi image: the extractor's templates are at 500
#: ppi, and a template of another resolution (an ISO/IEC 19794-2 or ANSI/NIST record from
#: elsewhere, e.g. at 1000 ppi) has its coordinates scaled to it when prepared. Unscaled, a
#: genuine 1000 ppi mate scored at impostor level (0.001 against 0.25).
TEMPLATE_PPI = 500
#: Resolutions a template may have: half to twice TEMPLATE_PPI (the range of fingerprint
#: scanners and of the standards' 500 and 1000 ppi classes), widened by one pixel/cm (2.54 ppi)
#: of rounding each way (ISO records store pixels/cm: 250 ppi reads back as 249, 1000 as 1001).
#: Beyond it the scaled minutiae would be a fraction or a multiple of a ridge apart: refused
#: (bad_resolution), not a no-hit.
MIN_TEMPLATE_PPI = 248
MAX_TEMPLATE_PPI = 1002
#: Largest orientation field kept, in blocks per side: the field of the largest image the
#: extractor accepts (1,600 px, ``extract.params.MAX_SIDE``, over FIELD_BLOCK). Fields are packed
#: padded to the largest rows and columns in a batch, so a record claiming a 16,368 x 16 px
#: image (1 x 1,023 blocks) beside one of 16 x 16,368 px made every record of a gallery segment
#: carry a 1,023 x 1,023 field (87 times the segment's size, 40 times slower searches). A
#: larger field is dropped (the term is then 0), like a field at another resolution.
MAX_FIELD_BLOCKS = 100

# --- Packing -----------------------------------------------------------------------------------

#: Templates with more minutiae than this are cut to their best-quality ones when prepared:
#: the packed arrays have a fixed row length and FVC-like templates hold 20–80 minutiae.
MAX_MINUTIAE = 128
#: score_many works through a block in sub-blocks of this many templates, so that the GEMM
#: output (~6 MB with 50 probe minutiae and 64 rows) stays in the CPU caches for the compiled
#: stage that reads it. Scores do not depend on it. With the numpy post-GEMM passes 64..512
#: measured alike (512 best by a little) and one undivided 10,000-template block ~15% slower;
#: with the compiled stage 32..1,024 measured alike (loaded machine).
CHUNK_TEMPLATES = 512
#: Blocks are padded to a multiple of this row length (GEMM-friendly shapes). Padding never
#: changes a score (padded rows have value -1 and are never paired).
PAD_MULTIPLE = 8
