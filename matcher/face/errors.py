"""Typed errors of the face pipeline (all subclasses of :mod:`matcher.errors` classes)."""

from __future__ import annotations

from matcher.errors import MatcherError


class FaceModelError(MatcherError):
    """A model file of ``face_recognition_models`` is missing or unreadable (installation)."""

    default_reason = "model_unavailable"


class DatasetError(MatcherError):
    """An evaluation dataset folder is missing, empty or not laid out as DIR/<identity>/<image>."""

    default_reason = "bad_dataset"


class DatasetNotFound(DatasetError):
    """The dataset folder does not exist (exit 4, not found)."""

    exit_code = 4
    default_reason = "dataset_not_found"
