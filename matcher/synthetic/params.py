"""Tunables of the synthetic fingerprint generator, each with the reason for its value.

All lengths are pixels at 500 ppi (the resolution every stage of bdx works at), angles are
radians. Image coordinates: ``x`` to the right, ``y`` down; orientation angles in this package
are measured in those coordinates (from +x towards +y) and are defined modulo π.
"""

from __future__ import annotations

import math

# --------------------------------------------------------------------------- master canvas
#: Resolution of everything generated here. FVC2002 DB1/DB3 and most AFIS input are 500 ppi.
PPI = 500
#: Master canvas (height, width). A whole fingertip is about 15 mm × 20 mm (≈ 300 × 420 px);
#: the canvas holds it with a small margin so impressions can be translated/rotated.
MASTER_SHAPE = (480, 416)
#: Finger silhouette semi-axes (x, y) ranges in px: fingertips are 12–16 mm wide and the pad
#: prints 17–21 mm tall at full pressure, so, as in FVC2002 DB1, a full-pressure print is
#: taller than a 374 px image and is cut by its border.
SILHOUETTE_SEMI_X = (118.0, 142.0)
SILHOUETTE_SEMI_Y = (170.0, 210.0)
#: Exponent of the superellipse used for the lower half (> 2: squarer, as the finger pad meets
#: the crease) and the upper half (< 2.3: rounder fingertip), after SFinGe's 4-part shape.
SILHOUETTE_POWER_TOP = 2.0
SILHOUETTE_POWER_BOTTOM = 3.0
#: Relative amplitude of the low-order random wobble of the silhouette boundary.
SILHOUETTE_WOBBLE = 0.04
#: Number of Fourier harmonics of that wobble (low order: skin boundaries are smooth).
SILHOUETTE_HARMONICS = 4

#: Flexion creases and scars: white lines across the ridges, fixed per finger (so they cause the
#: same spurious minutiae in every impression, as real ones do). Mean count (Poisson), length
#: and width ranges (px), and the maximum tilt from the finger's horizontal.
CREASE_MEAN = 1.5
CREASE_LENGTH = (50.0, 200.0)
CREASE_WIDTH = (1.5, 3.5)
CREASE_TILT = math.radians(30.0)
#: Where creases sit, as fractions of the semi-axes in the finger frame: across most of the
#: width, mostly in the lower pad (towards the distal flexion crease).
CREASE_REGION_X = 0.6
CREASE_REGION_Y = (-0.3, 0.9)
#: Curvature of a crease: sagitta as a fraction of its half-length (gently curved lines).
CREASE_BEND = 0.08

# --------------------------------------------------------------------------- classes
CLASSES = ("arch", "tented_arch", "left_loop", "right_loop", "whorl")
#: Natural class frequencies (Wilson et al., NIST: arch 3.7 %, tented 2.9 %, left loop 33.8 %,
#: right loop 31.7 %, whorl 27.9 %). Used when the caller does not fix the class.
CLASS_PRIORS = (0.037, 0.029, 0.338, 0.317, 0.279)

# --------------------------------------------------------------------------- singular points
#: Core position relative to the silhouette centre, as a fraction of the semi-axes: cores sit
#: slightly above the centre of the pad.
CORE_OFFSET_Y = (-0.25, 0.05)
CORE_OFFSET_X = (-0.15, 0.15)
#: Loop delta: below and to one side of the core (px). Typical ridge counts core–delta are
#: 8–16 ridges, i.e. 70–150 px at a 9 px period.
LOOP_DELTA_DX = (70.0, 115.0)
LOOP_DELTA_DY = (80.0, 130.0)
#: Whorl: two cores close together (a spiral/concentric centre) and two deltas below-left and
#: below-right of it.
WHORL_CORE_SEPARATION = (8.0, 30.0)
WHORL_DELTA_DX = (85.0, 125.0)
WHORL_DELTA_DY = (80.0, 120.0)
#: Tented arch: a delta almost straight below the core and close to it.
TENTED_DELTA_DY = (45.0, 75.0)
TENTED_DELTA_DX = (-10.0, 10.0)
#: Plain arch ridge model: ridges ``y = c - h·exp(-(x-cx)²/(2 s²))``; rise h (px) and width s.
ARCH_RISE = (0.45, 0.9)
ARCH_WIDTH = (55.0, 90.0)
#: Finger roll/tilt: a global rotation added to the orientation field and the layout (±15°
#: covers how fingers sit on a scanner's platen in enrolment).
GLOBAL_ROTATION = math.radians(12.0)
#: Vizcaya–Gerhardt style correction: each singular point's argument ``α`` is replaced by a
#: monotone warp ``α + Σ a_k sin(k α + φ_k)``. Amplitudes this small keep the warp monotone
#: (``Σ k |a_k| < 1``) and so never create or remove singular points.
VG_HARMONICS = 3
VG_AMPLITUDE = 0.2

#: Local flow irregularity (rad, σ of a smooth random field added to the orientation, and its
#: correlation length px): real ridge flow is not exactly any global model, and without it
#: fingers of one class share too much of their flow. Part of the optional correction.
FLOW_NOISE = 0.1
FLOW_NOISE_LENGTH = 50.0

# --------------------------------------------------------------------------- ridge density
#: Mean ridge period per finger (px). Adult ridge spacing is 0.4–0.55 mm ≈ 8–11 px at 500 ppi;
#: 9 px (frequency 1/9) is the usual figure.
PERIOD_MEAN = 9.0
PERIOD_SPREAD = 0.6
PERIOD_LIMITS = (7.5, 11.0)
#: Smooth spatial variation of the period inside a finger (± px) and its correlation length.
PERIOD_VARIATION = 0.7
PERIOD_SMOOTHING = 60.0
#: Ridges are slightly wider-spaced near the flexion crease (bottom of the pad): extra period
#: (px) at the bottom edge of the silhouette.
PERIOD_BOTTOM_EXTRA = 0.8

# --------------------------------------------------------------------------- ridge growth
#: Number of quantised orientations of the Gabor bank (15° steps); each pixel blends the two
#: nearest, so the effective orientation is continuous and 12 kernels suffice.
GABOR_ORIENTATIONS = 12
#: Number of quantised periods spanning PERIOD_LIMITS (1.75 px steps, blended likewise).
GABOR_PERIODS = 3
#: Gaussian envelope across the ridges, as a fraction of the period. ≈ 0.5 passes one clean
#: sinusoid without letting neighbouring frequencies through.
GABOR_SIGMA_ACROSS = 0.5
#: Envelope along the ridges (fraction of the period): longer than across, which joins ridge
#: pieces into continuous ridges while still allowing forks and endings (minutiae).
GABOR_SIGMA_ALONG = 0.75
#: Kernel half size, in envelope sigmas (3σ keeps > 99 % of the Gaussian mass).
GABOR_EXTENT = 3.0
#: Iterations of contextual filtering. Starting from sparse noise the pattern fills the canvas
#: and stabilises (< 1 % of pixels change sign per iteration) after about 12.
GROWTH_ITERATIONS = 10
#: Tile side (px) of the growth loop: each tile is filtered only with the kernels its pixels
#: select. ~100 px balances the per-call overhead against the margin (a kernel radius).
GROWTH_TILE = 80
#: Ridges are grown only in tiles reaching inside this silhouette level (1 = the boundary):
#: impressions never see further out (pressure ≤ 1 shrinks the contact area; skin drag and
#: warps move it by < 15 px), and the canvas corners cost a third of the time.
GROWTH_ACTIVE_LEVEL = 1.1
#: Gain applied to the normalised filter response before clipping to [-1, 1]: > 1 makes the
#: pattern saturate into clean ridge/valley plateaus as real ridges do.
GROWTH_GAIN = 4.0
#: Density of the initial random impulses (per px²): one per ~ 4 × 4 ridge periods. Fewer
#: seeds → fewer places where growth fronts meet → fewer minutiae.
SEED_DENSITY = 1.0 / (20.0 * 20.0)

# --------------------------------------------------------------------------- impressions
#: Default impression size (height, width) = FVC2002 DB1 (388 × 374 px at 500 ppi).
IMPRESSION_SHAPE = (374, 388)
#: Rigid placement: rotation range and translation (px) of the finger on the sensor.
ROTATION_MAX = math.radians(20.0)
TRANSLATION_MAX = 60.0
#: Elastic skin distortion (Cappelli's model): a close region of radius ``r`` around the
#: contact centre moves rigidly; beyond it the skin is dragged by a small extra rotation and
#: translation, blended by a smooth brake over ``BRAKE_WIDTH`` px.
DISTORTION_CLOSE_RADIUS = (50.0, 90.0)
DISTORTION_BRAKE_WIDTH = (80.0, 140.0)
DISTORTION_ROTATION = math.radians(5.0)
DISTORTION_TRANSLATION = 10.0
#: Extra smooth random displacement field (px amplitude, correlation length px): local skin
#: stretching not captured by the two-region model.
WARP_AMPLITUDE = 1.5
WARP_SMOOTHING = 80.0
#: Pressure: the contact area is the silhouette scaled by this factor about a contact centre
#: that wanders this far (px); light touches print only the middle of the pad.
PRESSURE_SCALE = (0.65, 1.0)
CONTACT_CENTRE_JITTER = 20.0
#: Contact boundary softness (px): ridges fade out over a few periods at the edge.
CONTACT_EDGE = 6.0
#: Skin condition: ridge/valley threshold on the master's [-1, 1] pattern. Positive → thinner
#: ridges (dry), negative → thicker ridges (wet).
DRY_THRESHOLD = (0.1, 0.35)
WET_THRESHOLD = (-0.3, -0.1)
NORMAL_THRESHOLD = (-0.1, 0.1)
#: Morphology kernel for dry (erosion) / wet (dilation) skin, px.
MORPH_KERNEL = 3
#: Dry skin breaks: fraction of the ridge area erased by random blotches, blotch size (px).
DRY_BREAKS = (0.05, 0.2)
BREAK_SMOOTHING = 3.0
#: Sweat pores and ridge texture: fraction of ridge pixels whitened by small random dots
#: (scale px). Real 500 ppi ridges are never uniformly inked.
PORE_FRACTION = (0.03, 0.1)
PORE_SCALE = 2.0
#: Uneven pressure across the pad: ink strength drops by up to this fraction (slowly varying).
PRESSURE_UNEVENNESS = 0.25
#: Lifted edge (partial contact): the cut runs this far from the contact centre, as a fraction
#: of the pad's smaller semi-axis (0.3 hides about a third of the pad).
PARTIAL_DEPTH = (0.3, 0.7)
#: Softness of the ridge edge when turning the pattern into ink (in pattern units).
INK_SOFTNESS = 0.15
#: Background grey level and its smooth variation; ink contrast (grey levels).
BACKGROUND_LEVEL = (205.0, 245.0)
BACKGROUND_VARIATION = 4.0
BACKGROUND_SMOOTHING = 80.0
INK_CONTRAST = (130.0, 210.0)
#: Sensor noise: Gaussian (grey levels) and blur sigma (px) of the optics.
NOISE_SIGMA = (4.0, 12.0)
BLUR_SIGMA = (0.5, 1.1)
#: Random gamma of the final image (exposure differences between captures).
GAMMA = (0.8, 1.25)

# --------------------------------------------------------------------------- template fast path
#: Minutiae density in the whole master silhouette, per px²: real 500 ppi prints show
#: 40–60 minutiae in an FVC-sized (≈ 230 × 330 px) contact area ⇒ about 1 / 1,400 px².
TEMPLATE_DENSITY = 1.0 / 1000.0
#: Minimum spacing between minutiae in ridge periods (closer pairs are merged by every
#: extractor's post-processing).
TEMPLATE_MIN_SPACING = 2.0
#: Fraction of bifurcations (the task asks 50/50; FVC extractions give 40–55 %).
TEMPLATE_BIFURCATION_FRACTION = 0.5
#: Per-impression extractor noise: position jitter σ (px), angle jitter σ (rad), probability of
#: missing a true minutia, mean count of spurious minutiae (Poisson).
TEMPLATE_POSITION_JITTER = 2.5
TEMPLATE_ANGLE_JITTER = math.radians(7.0)
TEMPLATE_DROP = 0.15
TEMPLATE_SPURIOUS = 4.0
#: Probability that a minutia's type is read the other way (ending ↔ bifurcation): the
#: commonest extractor error under pressure changes.
TEMPLATE_TYPE_FLIP = 0.1
#: Minutia quality range reported by the fast path; spurious minutiae get half (extractors
#: rate noise-born minutiae lower). Image quality range of the simulated captures.
TEMPLATE_QUALITY = (30, 95)
TEMPLATE_IMAGE_QUALITY = (40, 90)
#: Fingers generated per vectorised block in the fast path (memory ∝ block · candidates²).
TEMPLATE_BLOCK = 512
