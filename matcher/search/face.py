"""1:N face search: cosine similarity of unit embeddings, block-wise, on several threads.

Gallery fields: ``embedding`` (d,) float32, or with ``int8=True`` ``embedding_i8`` (d,) int8
plus ``scale`` () float32 (embedding ~= embedding_i8 * scale; 4x less memory, scores within
~1e-2 of float). One probe is a matrix-vector product per block, a batch (nq, d) @ (d, block).
Probes must carry the gallery's format/version; other embeddings are refused, never compared.

Ranking: by cosine, or, given ``offsets`` (the gallery's CSLS offsets ``r_g`` by global id,
:mod:`matcher.search.neighbours`), by ``cos - r_g / 2`` (hubness-aware ranking,
:mod:`matcher.face.hubness`).
Candidates always report their cosine, and with a threshold the records at or above it come
first (``params.CSLS_MATCH_PRIORITY``), so whether a search hits is the cosine's decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matcher.face.params import EMBEDDING_DIM, NORM_TOLERANCE
from matcher.face.template import DEFAULT_FORMAT, FORMAT_VERSION, FaceTemplate
from matcher.gallery import FACE_POSITION, Block, FieldSpec, Gallery, GallerySchema, RecordBatch
from matcher.gallery.errors import TemplateFormatError
from matcher.search import params
from matcher.search.blas import single_threaded_blas
from matcher.search.results import SearchResult, resolve
from matcher.search.shards import merged, run_shards
from matcher.search.topk import TopK, TopKRows


def face_schema(
    format: str = DEFAULT_FORMAT, version: int = FORMAT_VERSION, *, int8: bool = False
) -> GallerySchema:
    """Schema of a face gallery of ``format``/``version`` embeddings (float32 or int8)."""
    if int8:
        fields = {
            "embedding_i8": FieldSpec("int8", (EMBEDDING_DIM,)),
            "scale": FieldSpec("float32"),
        }
    else:
        fields = {"embedding": FieldSpec("float32", (EMBEDDING_DIM,))}
    return GallerySchema("face", format, version, fields)


def quantize(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float -> ((n, d) int8, (n,) float32 scale), symmetric per row."""
    e = np.asarray(embeddings, dtype=np.float32)
    peak = np.max(np.abs(e), axis=1)
    scale = np.where(peak > 0, peak / params.INT8_LEVELS, 1.0).astype(np.float32)
    q = np.rint(e / scale[:, None]).astype(np.int8)
    return q, scale


def face_records(
    references: Sequence[str],
    subjects: Sequence[str],
    embeddings: np.ndarray,
    *,
    schema: GallerySchema,
    format: str,
    format_version: int,
) -> RecordBatch:
    """Records of (n, d) unit embeddings for a gallery of ``schema``."""
    e = _unit_rows(embeddings, "embeddings")
    if "embedding_i8" in schema.fields:
        q, scale = quantize(e)
        arrays: dict[str, object] = {"embedding_i8": q, "scale": scale}
    else:
        arrays = {"embedding": e}
    return RecordBatch.build(
        list(references),
        list(subjects),
        np.full(len(references), FACE_POSITION),
        arrays,
        format=format,
        format_version=format_version,
    )


def _unit_rows(values: object, what: str) -> np.ndarray:
    """``values`` as (n, d) float32 after checking every row is finite and unit-norm (within
    the face template's ``NORM_TOLERANCE``): cosines are then in [-1, 1] and comparable to the
    thresholds, and no NaN row can enter a gallery or a ranking."""
    e = np.asarray(values, dtype=np.float32)
    if e.ndim != 2 or e.shape[1] != EMBEDDING_DIM:
        raise TemplateFormatError(f"{what} must be (n, {EMBEDDING_DIM}), got {e.shape}")
    if not np.all(np.isfinite(e)):
        raise TemplateFormatError(f"{what} contain NaN or infinity")
    norms = np.linalg.norm(e.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise TemplateFormatError(
            f"{what} must be unit-norm: row {int(bad[0])} has norm {norms[bad[0]]:.4f}"
        )
    return e


def templates_to_records(
    references: Sequence[str],
    subjects: Sequence[str],
    templates: Sequence[FaceTemplate],
    schema: GallerySchema,
) -> RecordBatch:
    """Records of :class:`FaceTemplate` objects (all must share one format/version)."""
    tags = {(t.format, t.format_version) for t in templates} or {
        (schema.format, schema.format_version)
    }
    if len(tags) != 1:
        raise TemplateFormatError(
            "templates of several formats in one batch", reason="incompatible_format"
        )
    ((fmt, ver),) = tags
    emb = np.stack([t.embedding for t in templates]) if templates else np.zeros((0, EMBEDDING_DIM))
    return face_records(references, subjects, emb, schema=schema, format=fmt, format_version=ver)


def _block_scores(block: Block, probes: np.ndarray) -> np.ndarray:
    """Cosine scores (n,) of a block (n rows) against one probe (d,)."""
    if "embedding" in block.arrays:
        return np.asarray(block.arrays["embedding"]) @ probes
    q = np.asarray(block.arrays["embedding_i8"]).astype(np.float32)
    s = q @ probes
    scale = np.asarray(block.arrays["scale"])
    return s * scale


def block_embeddings(block: Block) -> np.ndarray:
    """The block's embeddings (n, d) float32 (int8 rows widened and scaled)."""
    if "embedding" in block.arrays:
        return np.asarray(block.arrays["embedding"], dtype=np.float32)
    q = np.asarray(block.arrays["embedding_i8"]).astype(np.float32)
    return q * np.asarray(block.arrays["scale"], dtype=np.float32)[:, None]


def gallery_embeddings(gallery: Gallery) -> np.ndarray:
    """Every row's embedding (size, d) float32 by global id, deleted rows included."""
    blocks = gallery.blocks(params.FACE_INT8_BLOCK_ROWS)
    if not blocks:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    return np.concatenate([block_embeddings(b) for b in blocks])


def _rank_keys(
    block: Block, cos: np.ndarray, offsets: np.ndarray | None, threshold: float | None
) -> np.ndarray:
    """Rank keys (n,) of a block's cosines (n,): ``cos - r_g / 2``, plus the match priority
    for cosines at or above ``threshold``; the cosines themselves without ``offsets``."""
    if offsets is None:
        return cos
    key = cos - np.float32(0.5) * offsets[block.start : block.start + len(block)]
    if threshold is not None:
        key = key + np.where(cos >= threshold, np.float32(params.CSLS_MATCH_PRIORITY), 0)
    return np.asarray(key, dtype=np.float32)


def _block_scores_t(block: Block, probes: np.ndarray) -> np.ndarray:
    """Cosine scores (nq, n) of probes (nq, d) against a block (n rows)."""
    if "embedding" in block.arrays:
        return probes @ np.asarray(block.arrays["embedding"]).T
    q = np.asarray(block.arrays["embedding_i8"]).astype(np.float32)
    return (probes @ q.T) * np.asarray(block.arrays["scale"])[None, :]


def _check_probes(gallery: Gallery, probes: np.ndarray, format: str, version: int) -> np.ndarray:
    gallery.schema.check_format(format, version)
    if gallery.schema.modality != "face":
        raise TemplateFormatError("not a face gallery", reason="incompatible_format")
    return _unit_rows(probes, "probes")


def search_face(
    gallery: Gallery,
    probes: np.ndarray,
    *,
    format: str,
    format_version: int,
    k: int = params.DEFAULT_K,
    threshold: float | None = None,
    threads: int = params.THREADS,
    offsets: np.ndarray | None = None,
) -> list[SearchResult]:
    """Top-``k`` gallery records for each of (nq, d) unit-norm probes, best first.

    nq == 1 scans with a matrix-vector product per block; nq > 1 with one (block, d) @ (d, nq)
    product per block, so the gallery is read once for the whole batch. ``offsets`` (size,)
    float32: rank by CSLS (module doc; one probe at a time).
    """
    p = _check_probes(gallery, probes, format, format_version)
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.float32)
        if offsets.shape != (gallery.size,):
            raise ValueError(f"offsets must be ({gallery.size},), got {offsets.shape}")
        if p.shape[0] != 1:
            raise ValueError("a search ranked by offsets takes one probe")
    with single_threaded_blas():
        return _search(gallery, p, k, threshold, threads, offsets)


def _search(
    gallery: Gallery,
    p: np.ndarray,
    k: int,
    threshold: float | None,
    threads: int,
    offsets: np.ndarray | None,
) -> list[SearchResult]:
    if p.shape[0] == 1:
        int8 = "embedding_i8" in gallery.schema.fields
        blocks = gallery.blocks(params.FACE_INT8_BLOCK_ROWS if int8 else params.FACE_BLOCK_ROWS)

        def scan(shard: Sequence[Block]) -> TopK:
            return _scan_one(shard, p[0], k, offsets, threshold)

        top = merged(run_shards(blocks, scan, threads), k)
        return [resolve(gallery, top, threshold)]
    blocks = gallery.blocks(params.FACE_BATCH_BLOCK_ROWS)
    parts = run_shards(blocks, lambda s: _scan_many(s, p, k), threads)
    rows = TopKRows(k, p.shape[0])
    for part in parts:
        rows.merge(part)
    return [resolve(gallery, rows.row(j), threshold) for j in range(p.shape[0])]


def _scan_one(
    shard: Sequence[Block],
    probe: np.ndarray,
    k: int,
    offsets: np.ndarray | None,
    threshold: float | None,
) -> TopK:
    top = TopK(k)
    for b in shard:
        alive = None if b.alive.all() else b.alive
        cos = _block_scores(b, probe)
        if offsets is None:
            top.push(b.start, cos, alive)
        else:
            top.push(b.start, _rank_keys(b, cos, offsets, threshold), alive, cos)
    return top


def _scan_many(shard: Sequence[Block], probes: np.ndarray, k: int) -> TopKRows:
    """Per-probe best ``k`` over a shard, scores computed as (nq, d) @ (d, block)."""
    top = TopKRows(k, probes.shape[0])
    for b in shard:
        s = _block_scores_t(b, probes)
        if not b.alive.all():
            s[:, ~b.alive] = -np.inf
        top.push(b.start, s)
    return top
