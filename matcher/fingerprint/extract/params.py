"""Every tunable of the minutiae extractor, each with the reason for its value.

All lengths are pixels at the working resolution :data:`TARGET_PPI`; ridge periods of adult
fingers at 500 ppi lie between about 7 and 13 pixels (mean about 9), which fixes most sizes.
"""

from __future__ import annotations

# --- input validation / resampling -------------------------------------------------------------
#: Working resolution: templates are exchanged at 500 ppi (ISO/IEC 19794-2 convention, FBI EBTS).
TARGET_PPI = 500.0
#: Smallest side after resampling: below ~0.2 inch there is no room for a usable ridge pattern.
MIN_SIDE = 64
#: Largest side after resampling: 2.5 inch covers a full-roll plain impression; more is not a
#: single finger and would only cost memory.
MAX_SIDE = 1600
#: Plausible scanner resolutions; outside this a ppi value is a metadata error, not a scanner.
MIN_PPI, MAX_PPI = 100.0, 5000.0

# --- normalisation -----------------------------------------------------------------------------
#: Gaussian sigma of the local mean/contrast: ~2 ridge periods removes illumination and pressure
#: gradients without flattening the ridges themselves.
NORM_SIGMA = 16.0
#: Floor of the local standard deviation (grey levels), so flat background is not amplified
#: into noise.
NORM_MIN_STD = 6.0

# --- segmentation ------------------------------------------------------------------------------
#: Difference-of-Gaussians band for the contrast measure: passes ridge periods (5-15 px),
#: rejects pixel noise (< sigma 1) and illumination steps (> sigma 3).
SEG_BAND_SIGMAS = (1.0, 3.0)
#: Gaussian window (sigma) of the local band energy: most of a ridge period sees a full
#: ridge/valley cycle while keeping the boundary sharp.
SEG_SIGMA = 6.0
#: A pixel is foreground when its local band energy (RMS) exceeds this fraction of the image's
#: 90th percentile (relative, so it works on dark and light sensors). 0.3 let the halo of a
#: hard finger/paper edge into the mask (ridge ends there survived the border margin).
SEG_REL_CONTRAST = 0.45
#: ... and exceeds this absolute floor (grey levels of band energy): sensor noise on blank glass
#: stays below it.
SEG_MIN_CONTRAST = 4.0
#: ... and its orientation coherence exceeds this: ridges are locally parallel, noise is not.
SEG_MIN_COHERENCE = 0.2
#: Closing/opening radius (pixels): bridges gaps of about one ridge period, drops specks.
SEG_MORPH_RADIUS = 10
#: Foreground components smaller than this fraction of the largest one are dropped (smudges,
#: neighbouring-finger fragments).
SEG_MIN_COMPONENT_FRACTION = 0.15
#: Foreground under this many pixels is "no ridge area" (a 48x48 patch holds ~5 ridges).
SEG_MIN_AREA = 48 * 48

# --- orientation -------------------------------------------------------------------------------
#: Pre-smoothing before gradients: suppresses pixel noise, keeps ridges (period >= 7).
ORIENT_GRAD_SIGMA = 1.0
#: Gaussian sigma of the gradient structure tensor: ~half a period gives local orientation.
ORIENT_TENSOR_SIGMA = 4.0
#: Sigma of the smoothing of the coherence-weighted doubled-angle field: about one ridge
#: period; larger blurs cores/deltas, smaller lets creases and scars through (5 and 9 both
#: raised the mean FVC2002 EER; see benchmarks/README.md).
ORIENT_FIELD_SIGMA = 7.0
#: Weight of the orientation re-estimated on the Gabor-enhanced image when it is blended with
#: the raw-image field (coherence-weighted doubled angles) before a second Gabor pass; 0 skips
#: the second pass. FVC2002 DB1-4, mean EER / mean rank-1 / mean FNMR at FMR 1% / 0.1%
#: (cross-finger impostors): off 3.95% / 96.43% / 6.52% / 9.73%; 1.0 -> 3.85% / 96.65% /
#: 6.25% / 9.46% (EER DB1 2.50 -> 1.78%, DB4 5.79 -> 4.65%, DB2 2.85 -> 2.90%, DB3 4.65 ->
#: 6.07%). The median genuine score rose on all four sets (DB3 0.060 -> 0.085, DB4 0.080 ->
#: 0.104) at an unchanged impostor 99th percentile, but the EER tails are a few pairs: weight
#: 0.5 measured 4.49% / 96.21%, 2.0 4.11% / 96.43%, replacing the field outright 4.11% /
#: 96.21%, and a second-pass field sigma of 4 (blend) 4.10% / 96.61%. DB1 and DB4 gained and
#: DB3 lost in every variant. Costs one more orientation field and a Gabor pass over the
#: foreground only: 1.31x (DB2) and 1.36x (DB1) the CPU time of the single pass (1.57-1.63x when
#: the second pass filtered the whole image; templates identical).
ORIENT_REFINE_WEIGHT = 1.0
#: The template's coarse orientation field (``template.FIELD_BLOCK`` px blocks, the refined
#: field above): a block needs at least this share of its pixels in the foreground, else it is
#: background. Half: a block on the segmentation border then still has most of its ridges
#: inside (the prototype's value, picked a priori; benchmarks/README.md, "orientation-field
#: term").
FIELD_MIN_FOREGROUND = 0.5

# --- frequency ---------------------------------------------------------------------------------
#: Window for the local spectrum (power of two for the FFT; holds ~3 ridges).
FREQ_WINDOW = 32
#: Stride between spectral windows.
FREQ_STEP = 16
#: Smoothing of the window-period map, in windows (sigma): one window's estimate is noisy
#: (a pore or a crease shifts its spectrum), and the true period changes over several windows.
FREQ_MAP_SIGMA = 1.0
#: Plausible ridge periods (pixels at 500 ppi); spectral peaks outside are noise or creases.
FREQ_MIN_PERIOD, FREQ_MAX_PERIOD = 5.0, 15.0
#: Power exponent when averaging spectral radius: emphasises the peak over the leakage.
FREQ_POWER_EXPONENT = 2.0
#: Period used when no foreground window gives an estimate (population mean at 500 ppi).
FREQ_DEFAULT_PERIOD = 9.0

# --- enhancement (contextual Gabor filtering) --------------------------------------------------
#: Number of quantised orientations: 180/16 = 11.25 degrees, below the field's own error.
GABOR_ORIENTATIONS = 16
#: Gabor envelope sigma as a fraction of the ridge period: ~0.5 passes about 3 ridges along the
#: normal, enough to bridge breaks without merging across minutiae.
GABOR_SIGMA_ACROSS = 0.45
#: Envelope sigma along the ridge, as a fraction of the period: longer smooths along ridges,
#: joining small breaks (pores, dust).
GABOR_SIGMA_ALONG = 0.55
#: Relative spread of ridge periods served by separate frequency bands (0 disables banding).
GABOR_PERIOD_BANDS = (1.0,)
#: Kernel half-width in envelope sigmas (the wider of the two): the Gaussian has fallen to 1.1%
#: of its peak there, so the truncated tail changes a response by well under the binarisation's
#: margin, and the kernel (33 x 33 at the median period of 9.5 px) stays cheap.
GABOR_REACH_SIGMAS = 3
#: Kernel spectra a GaborBank keeps for the second pass, in bytes: the 16 of an image up to
#: about 850 x 850 px (every FVC image, most single-finger scans) fit. Beyond it each pass
#: transforms the kernels again (about a sixth more CPU there) rather than hold ~190 MB per
#: extraction for a 1600 x 1600 image while several extractions run at once.
GABOR_SPECTRA_CACHE_BYTES = 48 << 20

# --- binarisation / cleanup -------------------------------------------------------------------
#: Ridge blobs and valley holes smaller than this (pixels) are noise: a real ridge fragment that
#: carries a minutia is at least about 3 periods long (~ 3 * 9 * 3 px).
BIN_MIN_BLOB = 40

# --- minutiae ----------------------------------------------------------------------------------
#: Radius of the skeleton neighbourhood used to tell which way a minutia points (about one
#: period: the ridge itself, not its neighbours).
DIR_RADIUS = 9
#: Adjacent bifurcation pixels within this distance are one fork (8-thin skeleton artefact).
MERGE_RADIUS = 2

# --- filtering of false minutiae ---------------------------------------------------------------
#: Minutiae closer than this to the foreground boundary are mostly ridge cut-offs, not endings.
#: The per-pixel mask follows the contact edge within a few pixels, so under a ridge period of
#: margin suffices. FVC2002 DB1-4 (mean EER / mean rank-1, cross-finger impostors): 16 ->
#: 5.44% / 95.2%, 12 -> 4.30% / 96.2%, 10 -> 4.29% / 96.0%, 8 -> 4.11% / 96.2% (DB1 2.89 ->
#: 2.50%, DB4 6.43 -> 6.07%, DB2 and DB3 unchanged), 6 -> 4.38% / 96.2% (DB3 4.65 -> 5.35%:
#: cut-offs come back). With the matcher's alignment check (2026-12-05; it counts every
#: minutia in the common area, so minutiae near the edge of a partial impression now carry
#: weight) and BREAK_MAX_DISTANCE = 14: 8 -> 2.50% / 97.63%, 7 -> 2.44% / 97.68%, 6 -> 2.46% /
#: 97.90%, 5 -> 2.40% / 98.08%, 4 -> 2.75% / 97.86% (DB1 and DB3 worse: cut-offs); with
#: BREAK_MAX_DISTANCE = 18: 8 -> 2.83% / 97.23%, 7 -> 2.78% / 97.28%, 6 -> 2.68% / 97.41%.
#: 6 is the middle of the 5-7 plateau.
BORDER_MARGIN = 6.0
#: Two minutiae of any kind closer than this are a spur, bridge, hole or short island: drop both.
#: With the matcher's alignment check (2026-12-05; mean EER / mean rank-1): 8 -> 2.24% / 97.95%,
#: 7.5 -> 2.23% / 97.95%, 7 -> 2.15% / 98.21%, 6.5 -> 2.24% / 97.99%: below 8 DB3 gains (EER
#: 4.28 -> 2.85%) and DB1 and DB2 lose (0.72 -> 1.43%, 1.46 -> 1.78-1.85%), a trade, not kept.
PAIR_MIN_DISTANCE = 8.0
#: Endings this close that face each other across a gap are a broken ridge: drop both. Two
#: real endings can face each other across a wider valley too, and were dropped. FVC2002 DB1-4
#: with the matcher's alignment check (2026-12-05; mean EER / mean rank-1, cross-finger
#: impostors), BORDER_MARGIN 8: 18 -> 2.83% / 97.23%, 16 -> 2.61% / 97.50%, 14 -> 2.50% /
#: 97.63% (no set worse: EER DB2 1.78 -> 1.43%, DB3 4.56 -> 3.93%, DB4 3.93 -> 3.57%), 12 ->
#: 2.65% / 97.46%, 10 -> 2.59% / 97.50%; BORDER_MARGIN 6: 16 -> 2.48% / 97.68%, 14 -> 2.46% /
#: 97.90%, 12 -> 2.44% / 97.72%. 14 is the middle of the 10-16 plateau.
BREAK_MAX_DISTANCE = 14.0
#: "Facing" tolerance (radians) for broken-ridge pairs: directions opposite within 50 degrees
#: and each pointing away from the other.
BREAK_ANGLE_TOLERANCE = 0.87
#: A minutia with more than this many others within CLUSTER_RADIUS sits in noise (scars,
#: smudges): drop. FVC2002 DB1-4 (mean EER / mean rank-1, cross-finger impostors): 3 -> 4.71% /
#: 95.9%, 4 -> 4.47% / 96.0%, 5 -> 4.30% / 96.2% (no database worse); 6 and 8 measure the same
#: as 5 (4.29%), so the rule still drops dense noise: 3 also dropped real, dense ridge detail.
CLUSTER_RADIUS = 16.0
CLUSTER_MAX_NEIGHBOURS = 5
#: Minutiae in regions less coherent than this are unreliable (creases, noise). FVC2002 DB1-4
#: (mean EER / mean rank-1, cross-finger impostors): 0.25 -> 4.91% / 95.1%, 0.2 -> 4.71% / 95.9%,
#: 0.15 -> 4.82% / 95.5%, 0.1 -> 4.91% / 95.4%; 0.2 gains on DB3 (6.78 -> 5.35%) and costs one
#: genuine pair on DB1 and DB2 (+0.3%): a small, noisy gain in minutia recall. With the
#: orientation refinement (ORIENT_REFINE_WEIGHT = 1; mean EER / rank-1 / FNMR at FMR 1% / 0.1%):
#: 0.2 -> 3.85% / 96.65% / 6.25% / 9.46%, 0.15 -> 3.75% / 96.79% / 6.07% / 9.64% (DB4 EER
#: 4.65 -> 4.28%, rank-1 95.5 -> 96.4%; DB3 rank-1 94.6 -> 93.9%). Averaged over seven matcher
#: settings around the current one (MIN_NP 4, MAX_NP 12, TAU_PSI x1.5 and x2, SIGMA_S 9 and 11)
#: the mean EER is the same (3.95% against 3.90% at 0.2) and the mean rank-1 higher (96.68%
#: against 96.52%; DB4 96.2% against 95.3% in all seven): kept for DB4's rank-1, a gain of a
#: few probes.
MIN_LOCAL_COHERENCE = 0.15

# --- quality -----------------------------------------------------------------------------------
#: Coherence mapped to quality 0 / 100 (linear in between).
QUAL_COHERENCE_LOW, QUAL_COHERENCE_HIGH = 0.25, 0.85
#: Distance to the boundary (pixels) at which the border penalty vanishes.
QUAL_BORDER_FULL = 32.0
#: A foreground pixel counts as "good" for image quality above this coherence.
QUAL_GOOD_COHERENCE = 0.55
#: Foreground area (pixels at 500 ppi) of a full plain impression; smaller areas lower the
#: image quality proportionally (a 0.5 x 0.6 inch contact region).
QUAL_FULL_AREA = 250 * 300

# --- output ------------------------------------------------------------------------------------
#: Below this many minutiae no matcher can give a trustworthy score (ANSI/NIST practice and
#: the 12-point rule of thumb, halved for partial latents): refuse with too_few_minutiae.
MIN_MINUTIAE = 6
#: ISO/IEC 19794-2 stores at most 255 minutiae per view; keep the best ones.
MAX_MINUTIAE = 255
