"""Step 1 of the kernel (matcher.fingerprint.match.products): every path, the same products."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher import simd
from matcher.fingerprint import match
from matcher.fingerprint.match import params, products
from matcher.fingerprint.match.types import SearchTemplate, descriptor_length
from matcher.synthetic.templates import synthetic_templates

D = descriptor_length()


def probe_of(rng: np.random.Generator, mp: int) -> SearchTemplate:
    desc = rng.integers(0, params.QUANT_LEVELS + 1, (mp, D)).astype(np.float32)
    return SearchTemplate(desc, np.ones(mp, np.float32), np.zeros((mp, 4), np.float32))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), mp=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_uint8_rows_give_the_float_gemms_products(n: int, mp: int, seed: int) -> None:
    """Any row count, probe sizes across the 16-column blocks, values up to QUANT_LEVELS (the
    largest sums): the first mp columns equal BLAS's, exactly; any further ones are zero."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, params.QUANT_LEVELS + 1, (n, D)).astype(np.uint8)
    rows[rng.random(n) < 0.2] = 0  # padding rows
    probe = probe_of(rng, mp)
    want = rows.astype(np.float32) @ probe.descriptors.T
    got = products.products(rows, probe)
    assert got.dtype == np.float32 and got.shape[0] == n
    assert np.array_equal(got[:, :mp], want) and not got[:, mp:].any()
    assert np.array_equal(products.products(rows.astype(np.float32), probe), want)


@pytest.mark.skipif(not simd.vnni_available(), reason="this CPU lacks AVX-512 VNNI")
def test_vnni_pads_the_probe_to_whole_lane_blocks() -> None:
    probe = probe_of(np.random.default_rng(0), 17)
    words = products.probe_words(probe)
    assert words.shape == (D // 4, 32) and words.dtype == np.int32
    assert words is products.probe_words(probe)  # kept on the probe
    assert products.products(np.zeros((3, D), np.uint8), probe).shape == (3, 32)


def test_scores_of_uint8_and_float32_packs_are_equal() -> None:
    fingers = synthetic_templates(12, 2, seed=4)
    gallery = match.pack([match.prepare(f[0]) for f in fingers])
    as_stored = match.PackedTemplates(
        gallery.descriptors.astype(np.uint8),
        gallery.inv_norm,
        gallery.geometry,
        gallery.counts,
        field=gallery.field,
    )
    for f in fingers[:4]:
        probe = match.prepare(f[1])
        assert np.array_equal(match.score_many(probe, as_stored), match.score_many(probe, gallery))


def test_vnni_is_not_used_when_numba_compiles_for_another_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NUMBA_CPU_NAME=generic (portable caches) must not meet the intrinsic: float paths."""
    from numba.core import config

    host = simd.vnni_available()
    try:
        monkeypatch.setattr(config, "CPU_NAME", "generic")
        monkeypatch.setattr(config, "CPU_FEATURES", None)
        simd.vnni_available.cache_clear()
        assert not simd.vnni_available()
        monkeypatch.setattr(config, "CPU_FEATURES", "+avx512f,+avx512bw,+avx512vnni")
        simd.vnni_available.cache_clear()
        assert simd.vnni_available() == host  # features named: the host's answer
    finally:
        monkeypatch.undo()
        simd.vnni_available.cache_clear()
    assert simd.vnni_available() == host


@pytest.mark.skipif(not simd.vnni_available(), reason="this CPU lacks AVX-512 VNNI")
def test_cylinder_values_a_prepared_template_cannot_have_are_refused() -> None:
    from matcher.errors import TemplateFormatError

    probe = probe_of(np.random.default_rng(1), 3)
    probe.descriptors[1, 5] = params.QUANT_LEVELS + 1
    with pytest.raises(TemplateFormatError) as err:
        products.products(np.zeros((2, D), np.uint8), probe)
    assert err.value.reason == "bad_template"
