"""FaceTemplate: validation, canonical bytes, format checks on comparison."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from matcher.errors import TemplateFormatError
from matcher.face.template import (
    DEFAULT_FORMAT,
    FORMAT_VERSION,
    FaceTemplate,
    format_name,
    require_same_format,
    similarity,
    similarity_matrix,
)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_round_trip_is_exact() -> None:
    t = FaceTemplate(embedding=unit(1), quality=77)
    data = t.to_bytes()
    back = FaceTemplate.from_bytes(data)
    assert back == t
    assert back.to_bytes() == data  # canonical
    assert back.format == DEFAULT_FORMAT == "dlib-resnet-v1-flip-lm68/hog"
    assert back.embedding.dtype == np.float32 and not back.embedding.flags.writeable


def test_format_names_model_and_detector() -> None:
    assert format_name("cnn") == "dlib-resnet-v1-flip-lm68/cnn"
    with pytest.raises(ValueError):
        format_name("sift")


def test_similarity_is_cosine_and_symmetric() -> None:
    a, b = FaceTemplate(unit(1), 50), FaceTemplate(unit(2), 50)
    assert similarity(a, a) == pytest.approx(1.0, abs=1e-6)
    assert similarity(a, b) == pytest.approx(float(np.dot(unit(1), unit(2))), abs=1e-6)
    assert similarity(a, b) == similarity(b, a)
    m = similarity_matrix(np.stack([unit(1), unit(2)]), np.stack([unit(2)]))
    assert m.shape == (2, 1) and m[1, 0] == pytest.approx(1.0, abs=1e-6)


def test_similarity_matrix_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        similarity_matrix(np.zeros((2, 128), np.float32), np.zeros((2, 64), np.float32))


def test_mismatched_formats_are_never_compared() -> None:
    hog = FaceTemplate(unit(1), 50)
    cnn = FaceTemplate(unit(1), 50, format=format_name("cnn"))
    other = FaceTemplate(unit(1), 50, format="arcface-r100/retina")
    for x in (cnn, other):
        with pytest.raises(TemplateFormatError) as err:
            similarity(hog, x)
        assert err.value.reason == "format_mismatch"
        with pytest.raises(TemplateFormatError):
            require_same_format(x, hog)
    assert hog != cnn


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"embedding": np.ones(127, np.float32) / np.sqrt(127)}, "shape"),
        ({"embedding": np.ones(128, np.float32)}, "unit-norm"),
        ({"embedding": unit(3) * np.float32(1.0009)}, "unit-norm"),  # +0.09% on every score
        ({"embedding": np.full(128, np.nan, np.float32)}, "NaN"),
        ({"embedding": ["x"] * 128}, "not numeric"),
        ({"quality": 101}, "outside"),
        ({"quality": -1}, "outside"),
        ({"quality": True}, "integer"),
        ({"quality": 5.5}, "integer"),
        ({"format": "dlib"}, "model/detector"),
        ({"format": "Dlib/HOG"}, "model/detector"),
        ({"format": "a/" + "b" * 300}, "255"),
    ],
)
def test_constructor_validates(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {"embedding": unit(3), "quality": 10}
    args.update(kwargs)
    with pytest.raises(TemplateFormatError, match=fragment):
        FaceTemplate(**args)  # type: ignore[arg-type]


def test_unknown_version_is_refused() -> None:
    with pytest.raises(TemplateFormatError) as err:
        FaceTemplate(unit(1), 10, format_version=FORMAT_VERSION + 1)
    assert err.value.reason == "unsupported_version"


def _good() -> bytes:
    return FaceTemplate(unit(4), 60).to_bytes()


def _with_embedding(values: np.ndarray) -> bytes:
    data = _good()
    return data[: len(data) - 512] + values.astype("<f4").tobytes()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed_template"),
        (b"BDX", "malformed_template"),
        (b"XXXX" + _good()[4:], "malformed_template"),
        (_good()[:4] + bytes([9]) + _good()[5:], "unsupported_version"),
        (_good()[:-1], "malformed_template"),
        (_good() + b"\0", "malformed_template"),
        (_good()[:10], "malformed_template"),
        (_with_embedding(np.ones(128)), "malformed_template"),
        (_with_embedding(np.full(128, np.inf)), "malformed_template"),
        (_good().replace(b"dlib", b"dl\xffb"), "malformed_template"),
        (_good().replace(b"/hog", b"_hog"), "malformed_template"),
    ],
)
def test_malformed_bytes_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(TemplateFormatError) as err:
        FaceTemplate.from_bytes(data)
    assert err.value.reason == reason


def test_wrong_dimension_is_rejected() -> None:
    data = bytearray(_good())
    fmt_len = data[5]
    struct.pack_into("<H", data, 6 + fmt_len + 1, 64)
    with pytest.raises(TemplateFormatError, match="float32"):
        FaceTemplate.from_bytes(bytes(data))


def test_quality_byte_out_of_range_is_rejected() -> None:
    data = bytearray(_good())
    data[6 + data[5]] = 200
    with pytest.raises(TemplateFormatError) as err:
        FaceTemplate.from_bytes(bytes(data))
    assert err.value.reason == "malformed_template"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"embedding": ["DOE,JOHN 1970-01-01"] * 128},
        {"embedding": [b"DOE,JOHN 1970-01-01"] * 128},
        {"format": "DOE,JOHN/1970-01-01"},
    ],
)
def test_a_refused_value_is_named_by_its_field_never_quoted(kwargs: dict[str, object]) -> None:
    """numpy's message quoted the value (could not convert string to float: 'DOE,JOHN...'),
    and so did the format tag's, into the CLI's line and the API's 422."""
    args: dict[str, object] = {"embedding": unit(3), "quality": 10}
    args.update(kwargs)
    with pytest.raises(TemplateFormatError) as err:
        FaceTemplate(**args)  # type: ignore[arg-type]
    said = str(err.value)
    assert said.startswith(("embedding: not numeric", "format tag is not")), said
    assert "DOE" not in said and err.value.__cause__ is None  # nor in a logged traceback
