"""Tunables of 1:N search, each with the reason for its value."""

from __future__ import annotations

from matcher.fingerprint.extract import params as extract_params

#: Fewest distinct minutiae (positions) a fingerprint template needs to be searched or
#: enrolled: the extractor's own floor. A record from elsewhere with none, or with all of them
#: on one point, scores 0 against everything: as a probe a silent no-hit, as a record one
#: that can never match yet counts in the gallery's size (tightening every FPIR threshold).
MIN_TEMPLATE_MINUTIAE = extract_params.MIN_MINUTIAE

#: Rows per face block. gemv streams the block once, so it need not fit in cache; what must stay
#: in cache is the (block,) float32 score vector that the top-k step reads right after (256 KiB
#: at 65536 rows: L2-sized). Larger blocks amortise the per-block Python overhead (~20 µs),
#: which at 8192 rows would cost ~10% of a 1M-row scan.
FACE_BLOCK_ROWS = 65536

#: Rows per int8 face block: each is widened to a float32 copy before the product, and 8192
#: rows (4 MiB as float32) keep that copy in cache; 65536 rows made int8 5x slower than float.
FACE_INT8_BLOCK_ROWS = 8192

#: Rows per block for batched face probes: the (block, nq) score matrix is block * nq * 4 bytes;
#: 8192 rows x 64 probes = 2 MiB stays in L2/L3 while each column's top-k is taken.
FACE_BATCH_BLOCK_ROWS = 8192

#: Templates per fingerprint block handed to the matcher's ``score_many``; its working set grows
#: with the block, so this is a compromise between call overhead and cache (see benchmarks).
FINGERPRINT_BLOCK_ROWS = 1024

#: Fingerprint rows are scored in groups padded to their minutia count rounded up to this
#: (segments are padded to their longest template, ~2x the median). The matcher's own
#: PAD_MULTIPLE (8): ~8 groups per block; per CPU-second 30.5k comparisons unbucketed, 42.7k
#: with 16, 44.5k with 8 (10k synthetic gallery, one thread).
ROW_BUCKET = 8

#: Worker threads: numpy releases the GIL inside BLAS and ufunc loops, and the machine has two
#: cores; each thread scans a contiguous shard of blocks and keeps its own top-k.
THREADS = 2

#: Face neighbour lists (``matcher.search.neighbours``) are computed in blocks of this many
#: records (rows) against this many (columns): the (rows, k + columns) float32 candidate
#: matrix, 2048 x 4106 x 4 = 34 MB, and its partition stay well under a gigabyte of temporaries
#: while each matrix product (2048 x 128 x 4096) is large enough to run at the BLAS rate.
NEIGHBOUR_ROW_BLOCK = 2048
NEIGHBOUR_COL_BLOCK = 4096
#: A block's scores above the rows' current k-th best are gathered one by one (``np.nonzero``)
#: unless there are more than this many per row and neighbour slot, when a per-row partition
#: to the block's k best is cheaper (the first blocks of a build, where every list is empty).
NEIGHBOUR_DENSE_FACTOR = 4

#: A face search given a threshold ranks every record at or above it before every record below
#: it, each group by CSLS (``cos - r_g / 2``): adding this to the rank key of the records at or
#: above the threshold does it, since keys lie in [-1.5, 1.5] (cosines in [-1, 1], offsets in
#: [-1, 1]). So whether a search hits is exactly what the cosine decides (the FMR calibration
#: of ``node/thresholds.py`` holds), and CSLS only picks which matching record comes first.
CSLS_MATCH_PRIORITY = 4.0

#: Default number of candidates returned.
DEFAULT_K = 10

#: Finger position meaning "unknown" (ISO/IEC 19794-2 code 0): matches any gallery position.
UNKNOWN_FINGER = 0

#: int8 face quantisation: symmetric, per record, to +-127 (so -128 is never used and the
#: quantisation error is at most half a step of max|e|/127, < 0.4% of the largest component).
INT8_LEVELS = 127

#: Two-stage search by default (``penetration="auto"``) from this gallery size. Exhaustive
#: search costs ~11 µs of CPU per record (5,000 records: 55 ms); two-stage at 2% 0.5-0.9 µs
#: per record (both on VNNI, 2026-12-05; ~20 and ~3 µs on the float paths), with rank-1 unchanged
#: where measured (below). Smaller galleries stay exact.
AUTO_TWO_STAGE_RECORDS = 5_000
#: Fraction scored exactly by automatic two-stage search. On 10,000 synthetic fingers (200
#: probes; exhaustive rank-1 100%, 214 ms of CPU per probe): 1% -> 99.5% (26 ms), 2% -> 100%
#: (30 ms), 5% -> 100% (37 ms); the worst pre-selection rank of a mate was 1.6%.
AUTO_PENETRATION = 0.02

#: Two-stage search: a template's pre-selection score is the sum of this many best local
#: similarities (see ``matcher.search.preselect``). Measured on 10,000 synthetic fingers (200
#: probes, 24 x 20 central cylinders; 99th percentile / worst mate rank): 4 -> 0.42 / 1.3%,
#: 6 -> 0.27 / 1.6%, 8 -> 0.31 / 3.2%, 12 -> 1.2 / 4.7%, 16 -> 2.6 / 13.5%.
PRESELECT_PAIRS = 6

#: Pre-selection compares the probe's PRESELECT_PROBE_ROWS central cylinders with each gallery
#: template's PRESELECT_GALLERY_ROWS central ones (``matcher.search.preselect``); the cost is
#: proportional to their product. On 10,000 synthetic fingers (200 probes; CPU per probe, share
#: of mates in the best 1% / 2% / 5%): every cylinder (bucketed, ~44 x 40) 55 ms, 99.5 / 99.5 /
#: 99.5; 32 x 20: 21 ms, 100 / 100 / 100; 24 x 20: 16.5 ms, 99.5 / 99.5 / 100; 24 x 16: 14.6 ms,
#: 98.0 / 98.0 / 99.5; 16 x 16: 9.9 ms, 98.0 / 98.5 / 99.0. Border cylinders mislead more than
#: they help, so fewer, central ones rank mates as well as all of them at a third of the cost.
#: A second set (10,000 other synthetic fingers, 600 probes, 2026-12-02; CPU on a loaded
#: machine, so only the ratios count; mates in the best 1 / 2 / 5%, gallery x probe rows x
#: PRESELECT_PAIRS): 24 x 20 x 6: 37 ms, 98.3 / 99.0 / 99.8; 24 x 16 x 6: 29 ms, 98.3 / 99.2 /
#: 99.3; 16 x 16 x 5: 24 ms, 98.3 / 99.2 / 99.7; 24 x 12 x 4: 26 ms, 97.5 / 98.5 / 99.5. Over
#: both sets 24 x 16 keeps as many mates within a probe or two; 24 x 20 stays until a larger
#: set separates them.
PRESELECT_GALLERY_ROWS = 24
#: Pre-selection widens stored uint8 rows to float32 for its GEMM this many templates at a time
#: (256 x 24 x 64 x 4 bytes = 1.5 MiB, so the copy is still in cache when the GEMM reads it).
#: Per template, same process (1,024-template blocks): 32 -> 4.6 µs, 64 -> 3.7, 128 -> 3.3,
#: 256 -> 3.2, whole block -> 3.9 (a loaded machine; the ratios are what counts).
PRESELECT_CHUNK_RECORDS = 256
PRESELECT_PROBE_ROWS = 20
#: The VNNI pre-selection (``matcher.search.lanes``) scores whole groups of 16 templates, ~6x
#: faster per template than the float path; when fewer than this share of a block's records
#: are wanted (deleted, other finger positions), the float path over just those is cheaper.
LANES_MIN_SHARE = 0.25

#: Tried 2026-12-05, not kept: a coarse screen before pre-selection, the same score over only
#: the 12 most central stored rows against the probe's 10 (4 pairs), the full score then run on
#: its best 10% (``benchmarks/preselect_sweep.py``: 10,000 distinct synthetic fingers, 300
#: probes). It costs 0.55x the full score in the same process (the uint8 widening and the
#: max/partition passes do not shrink with the probe rows; the GEMM is already at the core's
#: FMA peak), so whole two-stage searches got only 0.84x / 0.82x the CPU at 10k / 100k records,
#: and mates kept in the final 2% fell 99.0 -> 98.7% (seed 2026) and 99.3 -> 98.7% (seed 7).
#: Pooling the reduced cells into 8 sectors x 2 rings (32 values, float32: no widening) kept
#: only 96-97% of mates in its best 10%; binarised rows with Hamming similarity 89-95%.
#: Smaller full scores, same tool and set (mates in the best 2 / 3%, cost against 24 x 20 x 6
#: timed alternately; 24 x 20 x 6 keeps 99.0% in its best 2%): 16 x 16 x 5 98.3 / 98.3%, 0.72x;
#: 20 x 16 x 5 98.7 / 99.0%, 0.69x; 24 x 16 x 6 98.7 / 98.7%, 0.80x; 16 x 12 x 5 98.0 / 98.0%,
#: 0.77x. The cost falls far less than the number of dot products: the GEMM is not all of it.
#: A numba loop over uint8 rows (int32 dot products, best row per probe column, top pairs
#: fused, no float32 copy or product matrix) took 3.1x the numpy path's time.
#: Fewer values per row by a projection on the leading eigenvectors of the rows' second-moment
#: matrix (learned on one synthetic set of 10,000 fingers, tested on another; float32 rows, no
#: widening): 16 / 24 / 32 values kept 59 / 83 / 92% of mates in the best 2% (the full score
#: 99.3%) at 0.47 / 0.55 / 0.63x its cost: the cylinders' detail is what finds the mates.
#: Product quantisation of the stored rows (k-means codebooks of 256 per sub-vector, learned on
#: the gallery; asymmetric distances summed from per-probe tables in numba), same set, 300
#: probes: 8 sub-vectors kept 95.3% of mates in the best 2% (the full score 99.0%) at 0.81x its
#: CPU, 16 sub-vectors 98.3% at 1.19x; one code of 4,096 centroids 63% at 0.32x.
