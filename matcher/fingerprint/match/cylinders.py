"""Minutia Cylinder-Code descriptors: ``prepare(template) -> SearchTemplate``.

For minutia ``i`` the cylinder is a grid of cells (``C`` in-circle cells x ``ND`` direction
sections) in ``i``'s own frame (centred on it, rotated by its direction). Cell ``(c, k)`` sums
over the other minutiae ``j`` a spatial term (Gaussian of the distance from ``j`` to the cell
centre) times a directional term (probability mass of ``angle_j - angle_i`` falling in
section ``k``), then squashes the sum with the sigmoid Ψ (MCC, Cappelli et al. 2010, eqs. 3-7).
Cells far outside the convex hull of the minutiae are invalid (0): no information there.
Values are quantised to integers (see ``params.QUANT_LEVELS`` for why).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial import ConvexHull, QhullError
from scipy.special import erf

from matcher.errors import TemplateFormatError
from matcher.fingerprint.match import params
from matcher.fingerprint.match.types import SearchTemplate, cell_offsets, descriptor_length
from matcher.fingerprint.template import FingerprintTemplate


def _wrap(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Angles to [-π, π)."""
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _hull_outside_distance(
    points: npt.NDArray[np.float64], query: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Distance (px, >= 0) of each query point (..., 2) outside the convex hull of points (n, 2).

    The maximum over hull facets of the signed facet distance: exact inside and along edges,
    a slight underestimate near vertices (harmless for a 50 px margin). Degenerate point sets
    (fewer than 3, or collinear) fall back to the distance to the nearest point.
    """
    try:
        eq = ConvexHull(points).equations  # (f, 3): unit outward normal, offset
    except (QhullError, ValueError):
        d = np.linalg.norm(query[..., None, :] - points, axis=-1)
        return np.asarray(d.min(axis=-1))
    signed = query @ eq[:, :2].T + eq[:, 2]
    return np.maximum(signed.max(axis=-1), 0.0)


def kept_indices(template: FingerprintTemplate) -> npt.NDArray[np.int64]:
    """(m,) indices into ``template`` of the minutiae :func:`prepare` keeps, in their order:
    all of them, or the MAX_MINUTIAE of highest quality when there are more."""
    if template.count <= params.MAX_MINUTIAE:
        return np.arange(template.count, dtype=np.int64)
    best = np.argsort(-template.quality.astype(np.int64), kind="stable")
    return np.sort(best[: params.MAX_MINUTIAE]).astype(np.int64)


def check_resolution(template: FingerprintTemplate) -> None:
    """Refuse (``bad_resolution``) a template whose resolution is outside the matcher's range."""
    ppi = template.resolution_ppi
    if not params.MIN_TEMPLATE_PPI <= ppi <= params.MAX_TEMPLATE_PPI:
        raise TemplateFormatError(
            f"resolution {ppi} ppi is outside {params.MIN_TEMPLATE_PPI}.."
            f"{params.MAX_TEMPLATE_PPI} ppi",
            reason="bad_resolution",
        )


def prepare(template: FingerprintTemplate) -> SearchTemplate:
    """Cylinders and geometry of ``template`` (m minutiae -> descriptors (m, d) float32); its
    orientation field, if any, as it is. Coordinates are brought to ``params.TEMPLATE_PPI``
    first. A template of another resolution has no usable field (its blocks are not the
    matcher's), nor has one larger than ``params.MAX_FIELD_BLOCKS``; the term is then 0."""
    if not isinstance(template, FingerprintTemplate):
        raise TemplateFormatError(f"expected a FingerprintTemplate, got {type(template).__name__}")
    check_resolution(template)
    ppi = template.resolution_ppi
    scale = params.TEMPLATE_PPI / ppi
    field = template.orientation
    if ppi != params.TEMPLATE_PPI or (
        field is not None and max(field.shape) > params.MAX_FIELD_BLOCKS
    ):
        field = None
    order = kept_indices(template)
    x = template.x[order].astype(np.float64) * scale
    y = -template.y[order].astype(np.float64) * scale
    theta = template.angle[order].astype(np.float64)
    m = x.shape[0]
    geometry = np.stack([x, y, np.cos(theta), np.sin(theta)], axis=1).astype(np.float32)
    d = descriptor_length()
    if m == 0:
        empty = np.zeros((0, d), np.float32)
        return SearchTemplate(empty, np.zeros(0, np.float32), geometry.reshape(0, 4), field=field)

    pts = np.stack([x, y], axis=1)  # (m, 2)
    off = cell_offsets()  # (C, 2)
    cos, sin = np.cos(theta), np.sin(theta)
    # Cell centres (m, C, 2): rotate the offsets into each minutia's frame.
    cx = x[:, None] + cos[:, None] * off[:, 0] - sin[:, None] * off[:, 1]
    cy = y[:, None] + sin[:, None] * off[:, 0] + cos[:, None] * off[:, 1]
    centres = np.stack([cx, cy], axis=-1)

    # Spatial term (m, C, m): Gaussian of centre-to-neighbour distance, self excluded.
    dist2 = (cx[:, :, None] - x[None, None, :]) ** 2 + (cy[:, :, None] - y[None, None, :]) ** 2
    spatial = np.exp(-dist2 / (2.0 * params.SIGMA_S**2))
    spatial[dist2 > params.NEIGHBOUR_CUTOFF**2] = 0.0
    spatial[np.arange(m), :, np.arange(m)] = 0.0

    # Directional term (m, m, ND): mass of N(dθ_ij, σD) inside each section.
    width = 2.0 * np.pi / params.ND
    centres_k = -np.pi + (np.arange(params.ND) + 0.5) * width
    dtheta = _wrap(theta[None, :] - theta[:, None])  # (i, j)
    rel = _wrap(dtheta[:, :, None] - centres_k)  # (i, j, ND)
    scale = params.SIGMA_D * np.sqrt(2.0)
    directional = 0.5 * (erf((rel + width / 2) / scale) - erf((rel - width / 2) / scale))

    values = np.einsum("icj,ijk->ick", spatial, directional)  # (m, C, ND)
    psi = 1.0 / (1.0 + np.exp(-params.TAU_PSI * (values - params.MU_PSI)))

    valid_cell = _hull_outside_distance(pts, centres) <= params.HULL_MARGIN  # (m, C)
    psi *= valid_cell[:, :, None]
    near = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    neighbours = (near <= params.RADIUS + params.NEIGHBOUR_CUTOFF).sum(axis=1) - 1
    valid = (neighbours >= params.MIN_NEIGHBOURS) & (
        valid_cell.mean(axis=1) >= params.MIN_VALID_CELLS
    )
    desc = np.rint(psi.reshape(m, d) * params.QUANT_LEVELS)
    desc[~valid] = 0.0
    norm = np.sqrt((desc * desc).sum(axis=1))
    inv = np.zeros(m, np.float64)
    inv[norm > 0] = 1.0 / norm[norm > 0]
    return SearchTemplate(desc.astype(np.float32), inv.astype(np.float32), geometry, field=field)
