"""1:N fingerprint search with the matcher's batch kernel, block by block, on several threads.

Gallery fields are the arrays of :class:`matcher.fingerprint.match.PackedTemplates`, stored as
``descriptors`` (M, d) **uint8** (cell values are integers 0..QUANT_LEVELS, so the cast back to
float32 per block is exact and 4x less memory is mapped), ``inv_norm`` (M,) float32,
``geometry`` (M, 4) float32, ``counts`` () int32, ``orientation`` (rows, cols) uint8 (the
template's orientation field, ``FingerprintTemplate.orientation``; 255 = background, also the
padding; a record without a field is one background block, and the matcher's orientation term
is then 0), and for two-stage search ``preselect`` (G, r) uint8
(:mod:`matcher.search.preselect`). M, rows and cols are ragged across segments (each appended
batch is packed to its own maximum); padding rows are zero, which the kernels ignore, and
padding blocks background, which they skip. Scores are those of ``match.score`` (1:1).

Every block is scored by ``score_many`` calls, one per group of similar minutia counts; rows
that are deleted or of another finger position are removed first. A probe of finger position 0
(unknown) is compared with all positions, a known one with the same position and with
unknown-position records.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

from matcher.errors import MatcherError, QualityError
from matcher.fingerprint import match
from matcher.fingerprint.match import kernel as match_kernel
from matcher.fingerprint.match import params as match_params
from matcher.fingerprint.match.cylinders import check_resolution, kept_indices
from matcher.fingerprint.match.types import FIELD_PAD, descriptor_length, pack_fields
from matcher.fingerprint.template import FORMAT as MINUTIAE_FORMAT
from matcher.fingerprint.template import FORMAT_VERSION as MINUTIAE_VERSION
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Block, FieldSpec, Gallery, GallerySchema, RecordBatch
from matcher.gallery.errors import IncompatibleFormatError, TemplateFormatError
from matcher.search import gather, lanes, params, preselect
from matcher.search.blas import single_threaded_blas
from matcher.search.results import SearchResult, resolve
from matcher.search.shards import merged, run_shards
from matcher.search.topk import TopK

#: Stored descriptor dtype: cell values fit (see matcher.fingerprint.match.params.QUANT_LEVELS).
DESCRIPTOR_DTYPE = np.uint8
assert np.iinfo(DESCRIPTOR_DTYPE).max >= match_params.QUANT_LEVELS


def fingerprint_schema() -> GallerySchema:
    """Schema of a gallery of the current matcher's prepared templates."""
    d = descriptor_length()
    return GallerySchema(
        "fingerprint",
        match.FORMAT,
        match.VERSION,
        {
            "descriptors": FieldSpec(np.dtype(DESCRIPTOR_DTYPE).name, (-1, d)),
            "inv_norm": FieldSpec("float32", (-1,)),
            "geometry": FieldSpec("float32", (-1, 4)),
            "counts": FieldSpec("int32"),
            "orientation": FieldSpec("uint8", (-1, -1), pad=FIELD_PAD),
            "preselect": FieldSpec(
                "uint8", (params.PRESELECT_GALLERY_ROWS, preselect.reduced_length(d))
            ),
        },
    )


def warm_up() -> None:
    """Compile, or load from numba's on-disk cache, the compiled stages of fingerprint search (the
    matcher kernel's and pre-selection's), so that a server's first query does not wait."""
    match_kernel.warm_up()
    preselect.warm_up()
    lanes.warm_up()
    gather.warm_up()


def check_usable(template: FingerprintTemplate) -> None:
    """Refuse a minutiae template the search cannot use, without preparing it: another
    format/version (:class:`IncompatibleFormatError`), a resolution outside the matcher's
    range (``bad_resolution``) or fewer than ``params.MIN_TEMPLATE_MINUTIAE`` distinct
    minutiae among those the search keeps (:class:`QualityError`, ``too_few_minutiae``)."""
    if (template.format, template.format_version) != (MINUTIAE_FORMAT, MINUTIAE_VERSION):
        raise IncompatibleFormatError(
            f"minutiae format {template.format} v{template.format_version} is not "
            f"{MINUTIAE_FORMAT} v{MINUTIAE_VERSION}"
        )
    check_resolution(template)
    kept = kept_indices(template)  # the minutiae the search template keeps
    points = np.stack([template.x[kept], template.y[kept]], axis=1)  # (m, 2) float32
    distinct = len(np.unique(points, axis=0)) if len(kept) else 0
    if distinct < params.MIN_TEMPLATE_MINUTIAE:
        raise QualityError(
            f"{distinct} distinct minutiae; at least {params.MIN_TEMPLATE_MINUTIAE} are needed",
            reason="too_few_minutiae",
        )


def prepare_checked(template: FingerprintTemplate | match.SearchTemplate) -> match.SearchTemplate:
    """A prepared template; templates :func:`check_usable` refuses are refused."""
    if isinstance(template, match.SearchTemplate):
        return template
    check_usable(template)
    return match.prepare(template)


def fingerprint_records(
    references: Sequence[str],
    subjects: Sequence[str],
    templates: Sequence[FingerprintTemplate | match.SearchTemplate],
    positions: Sequence[int] | None = None,
) -> RecordBatch:
    """Records of templates (prepared here when needed). Positions default to each
    :class:`FingerprintTemplate`'s ``finger_position`` (0 for prepared ones)."""
    if positions is None:
        positions = [getattr(t, "finger_position", 0) for t in templates]
    prepared = [prepare_checked(t) for t in templates]
    tags = {(p.format, p.version) for p in prepared} or {(match.FORMAT, match.VERSION)}
    if len(tags) != 1:
        raise IncompatibleFormatError("prepared templates of several formats in one batch")
    ((fmt, ver),) = tags
    if prepared:
        packed = match.pack(prepared)
        arrays = {
            "descriptors": packed.descriptors.astype(DESCRIPTOR_DTYPE),
            "inv_norm": packed.inv_norm,
            "geometry": packed.geometry,
            "counts": packed.counts,
            "orientation": stored_fields([p.field for p in prepared]),
            "preselect": np.stack([preselect.gallery_rows(p) for p in prepared]),
        }
    else:
        d = descriptor_length()
        arrays = {
            "descriptors": np.zeros((0, 1, d), DESCRIPTOR_DTYPE),
            "inv_norm": np.zeros((0, 1), np.float32),
            "geometry": np.zeros((0, 1, 4), np.float32),
            "counts": np.zeros(0, np.int32),
            "orientation": np.zeros((0, 1, 1), np.uint8),
            "preselect": np.zeros(
                (0, params.PRESELECT_GALLERY_ROWS, preselect.reduced_length(d)), np.uint8
            ),
        }
    return RecordBatch.build(
        list(references), list(subjects), list(positions), arrays, format=fmt, format_version=ver
    )


def stored_fields(fields: Sequence[np.ndarray | None]) -> np.ndarray:
    """The ``orientation`` field array (n, rows, cols) of a batch: fields padded with
    background; all background (n, 1, 1) when none has a field."""
    packed = pack_fields(fields)
    return np.full((len(fields), 1, 1), FIELD_PAD, np.uint8) if packed is None else packed


def _check(gallery: Gallery, probe: match.SearchTemplate) -> None:
    if gallery.schema.modality != "fingerprint":
        raise TemplateFormatError("not a fingerprint gallery", reason="incompatible_format")
    gallery.schema.check_format(probe.format, probe.version)
    if dict(gallery.schema.fields) != dict(fingerprint_schema().fields):
        raise IncompatibleFormatError(
            "the gallery's fields are not this version's (built before pre-selection or the "
            "orientation field were added?): rebuild it with `bdx gallery upgrade` while the "
            "node is stopped",
            reason="schema_mismatch",
        )


def _usable(block: Block, position: int) -> np.ndarray:
    """(n,) bool: live rows compatible with the probe's finger position."""
    use = block.alive
    if position != params.UNKNOWN_FINGER:
        use = use & ((block.positions == position) | (block.positions == params.UNKNOWN_FINGER))
    return use


def _row_groups(block: Block, rows: np.ndarray | None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``rows`` of a block (all when None) grouped by minutia count rounded up to ``ROW_BUCKET``:
    (padded length m, positions in ``rows``, block rows) per group, a handful per block.

    The kernels' cost grows with the padded row length M (segments are padded to their longest
    template) and their scores do not depend on it, so each group is packed only that long.
    """
    idx = np.arange(len(block)) if rows is None else rows
    counts = np.asarray(block.arrays["counts"])[idx]
    full = block.arrays["descriptors"].shape[1]
    step = params.ROW_BUCKET
    lengths = np.minimum(np.maximum(-(-counts // step) * step, match_params.N_RELAX), full)
    order = np.argsort(lengths, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
    return [(int(lengths[g[0]]), g, idx[g]) for g in groups if g.size]


def _score_rows(block: Block, rows: np.ndarray | None, probe: match.SearchTemplate) -> np.ndarray:
    """Exact kernel scores (r,) of ``rows`` of a block (all rows when None)."""
    a = block.arrays
    out = np.empty(len(block) if rows is None else rows.shape[0], dtype=np.float32)
    for m, group, r in _row_groups(block, rows):
        packed = match.PackedTemplates(
            np.asarray(a["descriptors"])[r, :m],
            np.asarray(a["inv_norm"])[r, :m],
            np.asarray(a["geometry"])[r, :m],
            np.asarray(a["counts"])[r],
            format=probe.format,
            version=probe.version,
            field=np.asarray(a["orientation"])[r],
        )
        out[group] = match.score_many(probe, packed)
    return out


#: Rows of one exact-scoring work item of two-stage search: (row length m, [(segment, rows)]).
_Gather = tuple[int, list[tuple[Block, np.ndarray]]]


def _gathered(segments: Sequence[Block], chosen: np.ndarray, block_rows: int) -> list[_Gather]:
    """The ``chosen`` global ids (sorted) as work items for the exact kernel: rows of every
    segment grouped by padded length across segments, about ``block_rows`` rows an item.
    Pre-selected rows are scattered over every segment; scoring them segment by segment made
    hundreds of tiny kernel calls. The rows are copied out by :func:`_pack_gathered`, in the
    worker threads."""
    groups: dict[int, list[tuple[Block, np.ndarray]]] = {}
    for seg in segments:
        lo, hi = np.searchsorted(chosen, [seg.start, seg.start + len(seg)])
        if hi > lo:
            for m, _, r in _row_groups(seg, chosen[lo:hi] - seg.start):
                groups.setdefault(m, []).extend(
                    (seg, r[i : i + block_rows]) for i in range(0, r.size, block_rows)
                )
    items: list[_Gather] = []
    for m, parts in groups.items():
        batch: list[tuple[Block, np.ndarray]] = []
        size = 0
        for seg, r in parts:
            batch.append((seg, r))
            size += r.size
            if size >= block_rows:
                items.append((m, batch))
                batch, size = [], 0
        if batch:
            items.append((m, batch))
    return items


def _pack_gathered(
    item: _Gather, probe: match.SearchTemplate
) -> tuple[np.ndarray, match.PackedTemplates]:
    """(global ids (n,), PackedTemplates) of one work item from :func:`_gathered`."""
    m, parts = item
    n = sum(r.size for _, r in parts)
    d = parts[0][0].arrays["descriptors"].shape[2]
    ids = np.empty(n, np.int64)
    desc = np.empty((n, m, d), DESCRIPTOR_DTYPE)  # as stored: the kernel takes uint8 rows
    inv = np.empty((n, m), np.float32)
    geo = np.empty((n, m, 4), np.float32)
    counts = np.empty(n, np.int32)
    shapes = [seg.arrays["orientation"].shape[1:] for seg, _ in parts]
    field = np.full((n, max(h for h, _ in shapes), max(w for _, w in shapes)), FIELD_PAD, np.uint8)
    i = 0
    for seg, r in parts:
        a = seg.arrays
        gather.gather_rows(
            r, seg.start, a["descriptors"], a["inv_norm"], a["geometry"], a["counts"],
            a["orientation"], i, ids, desc, inv, geo, counts, field,
        )  # fmt: skip
        i += r.size
    packed = match.PackedTemplates(
        desc, inv, geo, counts, format=probe.format, version=probe.version, field=field
    )
    return ids, packed


#: Key of a segment's pre-selection rows in lane layout (``Segment.derived``).
LANES_KEY = "preselect_lanes"
_LANES_LOCK = threading.Lock()


def _preselect_rows(
    block: Block, rows: np.ndarray, probe_cols: np.ndarray, words: np.ndarray | None
) -> np.ndarray:
    """Pre-selection scores (r,) of ``rows`` of a block (see :mod:`matcher.search.preselect`):
    with :mod:`matcher.search.lanes` where ``words`` (the probe's, None where the CPU lacks
    VNNI) and enough of the block is wanted, else the float path; both give the same scores."""
    if words is not None and rows.size >= params.LANES_MIN_SHARE * len(block):
        grid = _block_lanes(block)
        if grid is not None:
            return lanes.lane_scores(grid, words)[rows].astype(np.float32) * preselect.SCALE
    stored = np.asarray(block.arrays["preselect"])
    return preselect.FULL.scores(stored, probe_cols, None if rows.size == len(block) else rows)


def prepare_layouts(gallery: Gallery) -> None:
    """Build now what a search would build at its first use (the lane layout of every
    segment, where the CPU has VNNI), so that no query waits for it."""
    if lanes.available() and "preselect" in gallery.schema.fields:
        for b in gallery.blocks(max(len(gallery), 1)):
            _block_lanes(b)


def _block_lanes(block: Block) -> np.ndarray | None:
    """(ceil(n / LANES), G, w, LANES) int32: the block's groups of its segment's stored rows in
    lane layout (built at the segment's first search and kept with it), or None when the block
    does not start at a group boundary."""
    if block.row % lanes.LANES:
        return None
    derived = block.segment.derived
    grid = derived.get(LANES_KEY)
    if grid is None:
        with _LANES_LOCK:  # one thread builds it; the others wait for it
            grid = derived.get(LANES_KEY)
            if grid is None:
                grid = lanes.to_lanes(np.asarray(block.segment.arrays["preselect"]))
                derived[LANES_KEY] = grid
    first = block.row // lanes.LANES
    return grid[first : first + -(-len(block) // lanes.LANES)]


def _block_scores(block: Block, probe: match.SearchTemplate, position: int) -> np.ndarray:
    """(n,) float32 scores of a block, -inf where not compared (deleted, other finger)."""
    use = _usable(block, position)
    out = np.full(len(block), -np.inf, dtype=np.float32)
    rows = np.flatnonzero(use)
    if rows.size:
        out[rows] = _score_rows(block, None if rows.size == len(block) else rows, probe)
    return out


def fingerprint_scores(
    gallery: Gallery,
    probe: FingerprintTemplate | match.SearchTemplate,
    *,
    position: int | None = None,
    threads: int = params.THREADS,
    block_rows: int = params.FINGERPRINT_BLOCK_ROWS,
) -> np.ndarray:
    """Scores (size,) float32 of ``probe`` against every global id; -inf where not compared.

    ``position`` defaults to the probe's finger position (0 = compare with every finger).
    """
    p = prepare_checked(probe)
    _check(gallery, p)
    pos = _position(probe, position)
    out = np.full(gallery.size, -np.inf, dtype=np.float32)

    def work(shard: Sequence[Block]) -> None:
        for b in shard:
            out[b.start : b.start + len(b)] = _block_scores(b, p, pos)

    with single_threaded_blas():
        run_shards(gallery.blocks(block_rows), work, threads)
    return out


def search_fingerprint(
    gallery: Gallery,
    probe: FingerprintTemplate | match.SearchTemplate,
    *,
    k: int = params.DEFAULT_K,
    threshold: float | None = None,
    position: int | None = None,
    threads: int = params.THREADS,
    block_rows: int = params.FINGERPRINT_BLOCK_ROWS,
    penetration: float | Literal["auto"] | None = "auto",
    fmr: float | None = None,
) -> SearchResult:
    """Top-``k`` records for one finger probe, best first; ``hit`` decided at ``threshold``,
    or at the matcher's threshold for a target false match rate ``fmr``
    (:func:`matcher.fingerprint.match.threshold_for_fmr`; not both).

    ``penetration`` (0, 1] switches on two-stage search: every compared record is ranked by
    :mod:`matcher.search.preselect` (a local-similarity sort over reduced cylinders, about a
    quarter of the kernel's cost), and only the best ``penetration`` fraction (at least ``k``)
    is scored by the kernel. Exhaustive when None. ``"auto"`` (the default): two-stage at
    ``params.AUTO_PENETRATION`` on galleries of at least ``params.AUTO_TWO_STAGE_RECORDS``
    records, exhaustive on smaller ones.
    """
    p = prepare_checked(probe)
    _check(gallery, p)
    pos = _position(probe, position)
    if fmr is not None:
        if threshold is not None:
            raise MatcherError("give a threshold or a target FMR, not both", reason="bad_threshold")
        threshold = match.threshold_for_fmr(fmr)
    if penetration == "auto":
        big = gallery.size >= params.AUTO_TWO_STAGE_RECORDS
        penetration = params.AUTO_PENETRATION if big else None
    if penetration is not None:
        if not 0 < penetration <= 1:
            raise TemplateFormatError("penetration must lie in (0, 1]", reason="bad_penetration")
        with single_threaded_blas():
            top2 = _two_stage(gallery, p, pos, k, penetration, threads, block_rows)
        return resolve(gallery, top2, threshold)

    def work(shard: Sequence[Block]) -> TopK:
        top = TopK(k)
        for b in shard:
            s = _block_scores(b, p, pos)
            top.push(b.start, s, np.isfinite(s))
        return top

    with single_threaded_blas():
        top = merged(run_shards(gallery.blocks(block_rows), work, threads), k)
    return resolve(gallery, top, threshold)


def _position(probe: object, position: int | None) -> int:
    if position is None:
        position = int(getattr(probe, "finger_position", params.UNKNOWN_FINGER))
    if not 0 <= position <= 10:
        raise TemplateFormatError("finger position must be an ISO code 0..10")
    return position


def _two_stage(
    gallery: Gallery,
    probe: match.SearchTemplate,
    position: int,
    k: int,
    penetration: float,
    threads: int,
    block_rows: int,
) -> TopK:
    """Pre-select the best ``penetration`` fraction of compatible records (at least ``k``), then
    score those with the exact kernel; both stages run on ``threads``."""
    cols = preselect.probe_matrix(probe)
    words = lanes.probe_words(cols) if lanes.available() else None
    pre = np.full(gallery.size, -np.inf, dtype=np.float32)

    def pre_shard(shard: Sequence[Block]) -> None:
        for b in shard:
            rows = np.flatnonzero(_usable(b, position))
            if rows.size:
                pre[b.start + rows] = _preselect_rows(b, rows, cols, words)

    run_shards(gallery.blocks(block_rows), pre_shard, threads)
    n_use = int(np.count_nonzero(np.isfinite(pre)))
    m = min(n_use, max(k, int(np.ceil(penetration * n_use))))
    if m == 0:
        return TopK(k)
    chosen = np.sort(np.argpartition(-pre, m - 1)[:m])
    work = _gathered(gallery.blocks(max(gallery.size, 1)), chosen, block_rows)

    def score_shard(shard: Sequence[_Gather]) -> TopK:
        top = TopK(k)
        for item in shard:
            ids, packed = _pack_gathered(item, probe)
            top.add(ids, match.score_many(probe, packed))
        return top

    return merged(run_shards(work, score_shard, threads), k)
