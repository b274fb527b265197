"""Every tunable of the face pipeline, each with the reason for its value.

Units: pixels of the decoded (upright) input image unless stated; angles in degrees; grey
levels 0–255. The quality thresholds were checked against the LFW (deep-funneled) and ORL sets
so that ordinary photographs pass and only clearly unusable ones are refused.
"""

from __future__ import annotations

# --- detection -------------------------------------------------------------------------------

#: Names of the detectors. HOG is dlib's frontal face detector (fast on CPU); ``cnn`` is dlib's
#: max-margin object detector (MMOD) CNN, more robust to pose and light but ~50x slower on CPU.
DETECTOR_HOG = "hog"
DETECTOR_CNN = "cnn"
DETECTORS = (DETECTOR_HOG, DETECTOR_CNN)
DEFAULT_DETECTOR = DETECTOR_HOG

#: Upsampling passes tried in turn until a face is found. dlib's HOG window is 80x80 pixels, so
#: without upsampling faces smaller than ~80 px are missed; one 2x pass finds faces down to
#: ~40 px. Trying 0 first keeps the common case (a portrait) four times cheaper.
HOG_UPSAMPLE_STEPS = (0, 1)
#: The MMOD CNN's window is also 80 px; the same reasoning applies (and each pass is costly).
CNN_UPSAMPLE_STEPS = (0, 1)
#: When the caller declares the image to be a face (``whole_image_is_face``) and every HOG step
#: finds nothing, the MMOD CNN is tried at these steps before the whole image is taken as the
#: face. The CNN finds faces HOG misses (turned or tilted past its range, dark, tightly cropped)
#: at ~50x HOG's cost (0.6–0.8 s CPU for a 250 px image, paid only by those images, in the
#: detect stage). The box only seeds the 68-point landmarks and the chip is fitted to them: on
#: the astronaut and 12 LFW images found by both detectors the templates from the HOG and the
#: CNN box agreed at cosine 0.998–0.9999, so these templates keep the HOG pipeline's format.
#: ORL (4 images HOG misses): EER 0.60% with the inset whole image, 0.27% with the CNN's box.
#: Without that declaration it is not used: what HOG misses in ordinary photos is mostly
#: unusable for identification. On LFW A–M it found all 17 ``no_face`` images (FTE 27 -> 11)
#: but 10 of the 16 enrolled missed at rank-1, and 4 people whose only mate they were missed
#: too (rank-1 97.56 -> 97.35%, EER 0.61 -> 0.65%, TAR at FAR 0.1% 97.05 -> 96.94%). Images
#: smaller than CNN_FALLBACK_MIN_SIDE never try it (the CNN's 80 px window cannot fit).
HOG_CNN_FALLBACK_STEPS = (0,)
CNN_FALLBACK_MIN_SIDE = 80
#: dlib's own default decision threshold for the HOG detector (``adjust_threshold``).
HOG_SCORE_THRESHOLD = 0.0
#: Images whose longer side exceeds this are downscaled for detection only (landmarks and the
#: chip use the full image). A face filling a 1600 px frame is still far above the 80 px window,
#: and HOG on a 40 MP photo would take seconds and gigabytes.
DETECT_MAX_SIDE = 1600
#: A JPEG whose longer side exceeds this is decoded at 1/2, 1/4 or 1/8 scale, the smallest
#: keeping the longer side at least this (libjpeg's DCT scaling: ``reduce_to`` of
#: :func:`matcher.imageio.load_rgb`). The smallest face detection finds (HOG's 80 px window in
#: a DETECT_MAX_SIDE frame, 1/20 of the side) then still spans 160 px, more than CHIP_SIZE, so
#: templates keep their detail; a 7999 x 7999 JPEG is decoded at 4000 x 4000 instead.
DECODE_MIN_SIDE = 2 * DETECT_MAX_SIDE
#: When several faces are found, faces whose box area is below this fraction of the largest are
#: treated as background (bystanders in a crowd); only comparable faces make an image ambiguous.
SECONDARY_FACE_AREA_RATIO = 0.25
#: Detections scoring below this are weak: HOG false positives cluster just above the 0 boundary
#: (0.02–0.08 on the astronaut's suit, larger than her face), real faces of usable quality score
#: above ~0.5. When any detection is confident, weak ones are ignored (neither chosen as the face
#: nor counted as a second face); if all are weak, they are all candidates.
WEAK_FACE_SCORE = 0.3
#: Policies for an image with several comparable faces.
MULTIPLE_REFUSE = "refuse"
MULTIPLE_LARGEST = "largest"
#: Among the comparable faces (area >= SECONDARY_FACE_AREA_RATIO x largest), take the one whose
#: box centre is nearest the image centre. Datasets cropped around their subject (LFW's
#: deep-funnelled images centre the labelled person) put the subject in the middle; a bystander
#: may be larger or sharper. Faces too small to be comparable are never chosen, so a tiny
#: background face in the middle cannot win.
MULTIPLE_CENTRAL = "central"
MULTIPLE_POLICIES = (MULTIPLE_REFUSE, MULTIPLE_LARGEST, MULTIPLE_CENTRAL)

# --- whole-image fallback ----------------------------------------------------------------------

#: When the caller declares the whole image to be the face (tightly cropped portraits such as
#: ORL's 92x112), the landmark predictor is run on the image rectangle shrunk by this fraction
#: of each side: the predictors were trained on HOG boxes, which span brows to lips and leave out
#: hair, ears and chin, so a slightly inset rectangle matches its training boxes better.
WHOLE_IMAGE_INSET = 0.1

# --- alignment (as in dlib's face recognition example) -------------------------------------------

#: Landmark model the chip is aligned on: 68 (dlib's iBUG 300-W model) or 5. dlib's ResNet model
#: (2017) predates its 5-point model, which was released later as a smaller, faster way to the
#: same chips as the 68-point model. With 68 points the similarity transform of get_face_chip
#: is a least-squares fit to the 51 inner points (brows, eyes, nose, mouth) instead of to 5,
#: so one misplaced eye corner moves the chip much less; it costs ~1.5 ms more per face.
#: Measured with the same detections (4 descriptors of every chip in one run, first 999 LFW A–M
#: images, 187 people, flip-averaged): rank-1 misses 12 -> 8 of 995, EER 1.07 -> 0.88%, TAR at
#: FAR 0.1% 94.97 -> 95.22%. On the full set (6,552 images): EER 0.66 -> 0.61%, TAR at FAR
#: 0.1% 96.42 -> 97.05%, rank-1 unchanged (160 -> 159 misses); ORL EER 0.45 -> 0.27%. The
#: five points used by the quality checks are then the 68-point model's points of the same
#: definition (median nose drop 0.777 against 0.776 eye-distances from the 5-point model; yaw
#: and pitch within ~2 degrees, median), so the pose thresholds below keep their meaning.
ALIGN_LANDMARKS = 68

#: The ResNet model was trained on 150x150 chips made with 0.25 padding around the
#: landmark-aligned face; other values feed it inputs it has never seen.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: The region of the chip that holds the face itself (no padding): padding 0.25 on each side of a
#: unit square gives a chip of 1.5 units, so the face spans [0.25, 1.25] / 1.5 of each axis.
CHIP_CORE = (CHIP_PADDING / (1 + 2 * CHIP_PADDING), (1 + CHIP_PADDING) / (1 + 2 * CHIP_PADDING))

# --- embedding ---------------------------------------------------------------------------------

EMBEDDING_DIM = 128
#: No jitter: dlib's 100-jitter mode is 100x slower for ~0.1% accuracy.
NUM_JITTERS = 0
#: The embedding is the normalised sum of the unit descriptors of the chip and of its mirror
#: image (test-time flip augmentation: a face and its mirror are the same person, and averaging
#: the two cancels part of the pose- and light-dependent noise). Measured on LFW A–M in one run
#: (same detections, 6,515 rank-1 probes, all 21 M impostor pairs): rank-1 96.76 -> 97.54%,
#: EER 0.81 -> 0.66%, TAR at FAR 0.1% 94.83 -> 96.42%, for a second embedding pass (median CPU
#: per image 89 -> 157 ms, within the 200 ms budget).
FLIP_AVERAGE = True
#: Unit-norm tolerance when validating embeddings: float32 rounding of 128 terms stays within
#: about 1e-7. Scores are dot products, so a template's norm scales all of them: at 1e-3 a peer
#: or officer could send a vector of norm 1.0009 and gain 0.09% on every cosine (a "cosine"
#: of 1.0009 was answered; a crafted probe hit 76% of 100-record galleries instead of 50%).
NORM_TOLERANCE = 1e-5
#: dlib's documented same-person rule: Euclidean distance < 0.6 between raw descriptors. For
#: unit vectors, ``d**2 = 2 - 2*cos``; dlib's raw descriptors have norms of about 1.3–1.6, so
#: the cosine threshold that matches dlib's rule is not a fixed function of 0.6; use thresholds
#: calibrated on impostor scores (``matcher.evaluation.threshold_at_fmr``) instead.
DLIB_DISTANCE_THRESHOLD = 0.6

# --- quality checks ------------------------------------------------------------------------------

#: Minimum distance between the eye centres, in input pixels. Below ~20 px the eye corners (the
#: alignment anchors) are a pixel or two apart and the chip is mostly interpolation; dlib's
#: recognition degrades sharply there. ISO/IEC 19794-5 asks 60 px for enrolment photos, which is
#: where the size score saturates.
MIN_INTEREYE_PX = 20.0
GOOD_INTEREYE_PX = 60.0
#: Sharpness: variance of the Laplacian of the grey face core of the 150 px chip (the chip puts
#: every face at the same scale, so the measure does not depend on the input resolution).
#: LFW (deep-funneled, soft JPEGs) gives 11–220, median 54; ORL 28–570 (5-point chips; on
#: 68-point chips, every 20th LFW image: 10.5–233, median 56, ratio to the 5-point chip 1.03).
#: A Gaussian blur of sigma 2 / 3 / 4 px on a 42 px-IOD face (skimage's astronaut) gives
#: 14 / 8 / 5.7 on the 5-point chip and 9.7 / 5.5 / 3.9 on the 68-point chip. The score saturates
#: at GOOD_SHARPNESS (a sharp portrait).
MIN_SHARPNESS = 10.0
#: Sharpness and exposure read only the chip pixels made of the image alone, this many pixels
#: clear of the fill (the Laplacian's 3x3 support, and one to spare): the black fill beyond a
#: border, and its edge, made a blurred face cut by the frame measure sharp (skimage's
#: astronaut blurred by sigma 2 px measures 9.7; cut 20% at its right side, 646 with the fill,
#: 5.2 without).
FRAME_MARGIN_PX = 2
#: Least share of the face core (CHIP_CORE of each axis) that must lie inside the image
#: (``face_out_of_frame``). ORL's tight 92x112 crops keep 0.91 or more (1.5% below 0.95; every
#: 10th LFW image keeps 1.0); skimage's astronaut cut by 20% of its face box at the right
#: keeps 0.83, by 10% 0.91. The framing factor ramps from here to 1.
MIN_IN_FRAME = 0.85
GOOD_SHARPNESS = 60.0
#: Exposure of the face core (grey levels). Underexposed: mean below 40 or more than half of the
#: pixels at or below DARK_LEVEL (shadow detail lost). Overexposed: mean above 215 or more than
#: half the pixels at or above BRIGHT_LEVEL (clipped highlights). Normal photos have a core mean
#: of 70–180.
DARK_LEVEL = 20
BRIGHT_LEVEL = 240
MIN_MEAN_LEVEL = 40.0
MAX_MEAN_LEVEL = 215.0
MAX_CLIPPED_FRACTION = 0.5
#: Comfortable mean range: the exposure score is 1 inside it and falls linearly to 0 at the limits.
GOOD_MEAN_RANGE = (80.0, 170.0)
#: Pose from the 5-point geometry (see ``quality.pose_angles``): a frontal face has the nose base
#: on the eyes' perpendicular bisector, NOSE_DROP eye-distances below the eye line and NOSE_DEPTH
#: eye-distances in front of it (NOSE_DROP measured as the LFW median; NOSE_DEPTH from adult
#: anthropometry: subnasale ~35 mm in front of the mean eye-corner depth, eyes 63 mm apart).
#: The model saturates at atan2(NOSE_DEPTH, NOSE_DROP) ≈ 38° of downward pitch (above the limit).
NOSE_DROP = 0.76
NOSE_DEPTH = 0.6
#: Beyond ~45° yaw one eye is occluded and the 5-point landmarks are guesses (LFW's turned heads
#: sit at 20–35°). Pitch: the 5-point model cannot tell strong downward pitch from a long nose
#: (it saturates at ~38°; 1–2% of LFW reach it), so only upward pitch beyond 40° (nose base
#: near the eye line) is refused; downward pitch lowers the score instead.
MAX_YAW_DEG = 45.0
MAX_PITCH_DEG = 40.0
#: The pose score is 1 up to this many degrees and falls linearly to 0 at the limits.
GOOD_POSE_DEG = 15.0
#: Weights of the per-check scores in the quality score (a weighted geometric mean, so that one
#: very poor factor pulls the score down more than an average would).
QUALITY_WEIGHTS = {
    "size": 1.0,
    "sharpness": 1.0,
    "exposure": 1.0,
    "pose": 1.0,
    "framing": 1.0,
    "detection": 0.5,
}
#: Detection factor: HOG scores are SVM margins (0 = decision boundary, confident frontal faces
#: > 1); MMOD confidences behave alike. A face at the boundary gets a factor of 1/3.
BAD_DETECTION_SCORE = -0.5
GOOD_DETECTION_SCORE = 1.0
#: Score floor of each factor inside the geometric mean (a factor of 0 would zero the product
#: even for an image that passed every check).
MIN_FACTOR = 0.05
#: Detection factor for faces the caller declared (whole-image fallback): no detector evidence.
DECLARED_FACE_DETECTION_FACTOR = 0.5

# --- dataset evaluation ------------------------------------------------------------------------

#: Impostor pairs used in full up to this count (LFW A–M has 21 M; 25 M float32 scores are
#: 100 MB); beyond it a deterministic Bernoulli sample of about this many is taken.
MAX_IMPOSTOR_PAIRS = 25_000_000
IMPOSTOR_SAMPLE_SEED = 20_021
#: Probe rows per block of the score matrix (block x n float32 in memory at a time).
SCORE_BLOCK_ROWS = 512
#: FMR operating points reported (ISO/IEC 19795-1: TAR = 1 - FNMR at the given FMR).
REPORT_FMRS = (0.01, 0.001)
#: Rows of the threshold table the evaluation reports (``thresholds``): the node's table
#: (``node.thresholds.FACE_THRESHOLDS``) reaches 1e-6 because a 1:N search of N records holds
#: each comparison to about FPIR / N.
TABLE_FMRS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
#: A table row is reported only where at least this many impostor scores reach its threshold:
#: with fewer, one pair more or less moves the threshold by a whole row.
TABLE_MIN_ABOVE = 3

#: Neighbours per record of the hubness-aware (CSLS) ranking of the node's face search and of
#: ``bdx eval face``'s rank-1 (``--csls-k``; :mod:`matcher.face.hubness`). Fixed a priori at
#: Conneau et al.'s (2018) value (the one their paper uses throughout, and the one tried on the
#: earlier embeddings), not fitted on LFW: it is
#: small against a gallery (the offset measures the local crowding a hub shows) and above the
#: few records a subject usually has. LFW A–M, ranking by CSLS (leave-one-out, 6,516 probes):
#: rank-1 97.56% (cosine) -> 98.22 / 98.13 / 98.04 / 97.99% for k = 5 / 10 / 20 / 50. The CSLS
#: score is for *ranking* only: as a verification score it is worse on LFW (k = 10: EER 0.61 ->
#: 2.01%, TAR at FAR 0.1% 97.05 -> 47.55%; gallery term only: 1.07%, 88.08%), because a
#: subject's own images fill its k neighbours (LFW's median offset is 0.95); on ORL (10 images
#: of each of 40 people) it is better (EER 0.27 -> 0.01%). Keep thresholds on the cosine.
CSLS_K = 10
#: Slack when deciding whether the probe is one of a record's k nearest neighbours (the two
#: cosines come from different matrix-product blocks and may differ in the last float32 bits).
CSLS_TIE_SLACK = 1e-5

# --- diagnosis of rank-1 misses ----------------------------------------------------------------

#: How many of the largest-margin misses ``bdx eval face --diagnose`` lists: enough to look at
#: by eye, short enough to read.
DIAGNOSE_WORST = 25
#: Face box width separating "small" faces in the diagnosis: LFW's 250 px images hold faces of
#: ~90–120 px; below 80 px (the HOG window) the face was found only after upsampling.
DIAGNOSE_SMALL_FACE_PX = 80
