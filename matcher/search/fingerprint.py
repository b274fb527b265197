"""1:N fingerprint search with the matcher's batch kernel, block by block, on several threads.

Gallery fields are the arrays of :class:`matcher.fingerprint.match.PackedTemplates`, stored as
``descriptors`` (M, d) **uint8** (cell values are integers 0..QUANT_LEVELS, so the cast back to
float32 per block is exact and 4x less memory is mapped), ``inv_norm`` (M,) float32,
``geometry`` (M, 4) float32, ``counts`` () int32. M is ragged across segments (each appended
batch is packed to its own maximum); padding rows are zero, which the kernel ignores.

Every block is scored by one ``score_many`` call; rows that are deleted or of another finger
position are removed first. A probe of finger position 0 (unknown) is compared with all
positions, a known one with the same position and with unknown-position records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matcher.fingerprint import match
from matcher.fingerprint.match import params as match_params
from matcher.fingerprint.match.types import descriptor_length
from matcher.fingerprint.template import FORMAT as MINUTIAE_FORMAT
from matcher.fingerprint.template import FORMAT_VERSION as MINUTIAE_VERSION
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Block, FieldSpec, Gallery, GallerySchema, RecordBatch
from matcher.gallery.errors import IncompatibleFormatError, TemplateFormatError
from matcher.search import params
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
        },
    )


def prepare_checked(template: FingerprintTemplate | match.SearchTemplate) -> match.SearchTemplate:
    """A prepared template; minutiae templates of another format/version are refused."""
    if isinstance(template, match.SearchTemplate):
        return template
    if (template.format, template.format_version) != (MINUTIAE_FORMAT, MINUTIAE_VERSION):
        raise IncompatibleFormatError(
            f"minutiae format {template.format} v{template.format_version} is not "
            f"{MINUTIAE_FORMAT} v{MINUTIAE_VERSION}"
        )
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
        }
    else:
        d = descriptor_length()
        arrays = {
            "descriptors": np.zeros((0, 1, d), DESCRIPTOR_DTYPE),
            "inv_norm": np.zeros((0, 1), np.float32),
            "geometry": np.zeros((0, 1, 4), np.float32),
            "counts": np.zeros(0, np.int32),
        }
    return RecordBatch.build(
        list(references), list(subjects), list(positions), arrays, format=fmt, format_version=ver
    )


def _check(gallery: Gallery, probe: match.SearchTemplate) -> None:
    if gallery.schema.modality != "fingerprint":
        raise TemplateFormatError("not a fingerprint gallery", reason="incompatible_format")
    gallery.schema.check_format(probe.format, probe.version)


def _block_scores(block: Block, probe: match.SearchTemplate, position: int) -> np.ndarray:
    """(n,) float32 scores of a block, -inf where not compared (deleted, other finger)."""
    use = block.alive
    if position != params.UNKNOWN_FINGER:
        use = use & ((block.positions == position) | (block.positions == params.UNKNOWN_FINGER))
    out = np.full(len(block), -np.inf, dtype=np.float32)
    rows = np.flatnonzero(use)
    if rows.size == 0:
        return out
    a = block.arrays
    everything = rows.size == len(block)
    pick = (lambda v: np.asarray(v)) if everything else (lambda v: np.asarray(v)[rows])
    packed = match.PackedTemplates(
        pick(a["descriptors"]).astype(np.float32),
        pick(a["inv_norm"]),
        pick(a["geometry"]),
        pick(a["counts"]),
        format=probe.format,
        version=probe.version,
    )
    out[rows] = match.score_many(probe, packed)
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
) -> SearchResult:
    """Top-``k`` records for one finger probe, best first; ``hit`` decided at ``threshold``
    (e.g. the matcher's threshold for a target FMR)."""
    p = prepare_checked(probe)
    _check(gallery, p)
    pos = _position(probe, position)

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
