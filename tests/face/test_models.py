"""Model files: located through face_recognition_models, typed error when missing."""

from __future__ import annotations

import os

import face_recognition_models
import pytest

from matcher.face import models
from matcher.face.errors import FaceModelError


def test_model_files_are_found() -> None:
    for name in (models.FIVE_POINT, models.SIXTY_EIGHT_POINT, models.RESNET, models.MMOD):
        assert os.path.isfile(models.model_path(name))


def test_loaders_are_cached() -> None:
    assert models.resnet() is models.resnet()
    assert models.five_point_predictor() is models.five_point_predictor()
    assert models.sixty_eight_point_predictor() is models.sixty_eight_point_predictor()


def test_missing_file_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        face_recognition_models, "face_recognition_model_location", lambda: "/nonexistent.dat"
    )
    with pytest.raises(FaceModelError) as err:
        models.model_path(models.RESNET)
    assert err.value.reason == "model_unavailable" and err.value.exit_code == 3


def test_unknown_model_is_a_typed_error() -> None:
    with pytest.raises(FaceModelError):
        models.model_path("no_such_model")


def test_unreadable_model_file(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bad = os.path.join(tmp_path, "bad.dat")
    with open(bad, "wb") as fh:
        fh.write(b"not a dlib model")
    monkeypatch.setattr(
        face_recognition_models, "pose_predictor_five_point_model_location", lambda: bad
    )
    with pytest.raises(FaceModelError, match="cannot load"):
        models._load(__import__("dlib").shape_predictor, models.FIVE_POINT)
