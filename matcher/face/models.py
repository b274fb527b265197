"""The dlib model files, loaded lazily (they total ~130 MB on disk).

The files come from the ``face_recognition_models`` package (no download at run time).
Threads: dlib's detectors and its ResNet keep per-call buffers in the model object, so two
threads running one of them at once get each other's results, or crash the process (the node
extracts faces on several worker threads). Each thread therefore loads its own (a few MB for
the HOG detector and the ResNet's 22 MB; once per thread). The shape predictors are read-only
when applied and are shared by the process. :func:`warm_up` loads what a pipeline needs, for
the calling thread, ahead of the first image (used as the worker-pool initializer).
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import dlib

from matcher.face.errors import FaceModelError
from matcher.face.params import ALIGN_LANDMARKS, DETECTOR_CNN

FIVE_POINT = "shape_predictor_5_face_landmarks"
SIXTY_EIGHT_POINT = "shape_predictor_68_face_landmarks"
RESNET = "dlib_face_recognition_resnet_model_v1"
MMOD = "mmod_human_face_detector"


def model_path(name: str) -> str:
    """Path of a model file shipped by ``face_recognition_models``; raises FaceModelError."""
    try:
        with warnings.catch_warnings():
            # The package locates its files with pkg_resources, deprecated in new setuptools.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            import face_recognition_models as frm
        locate = {
            FIVE_POINT: frm.pose_predictor_five_point_model_location,
            SIXTY_EIGHT_POINT: frm.pose_predictor_model_location,
            RESNET: frm.face_recognition_model_location,
            MMOD: frm.cnn_face_detector_model_location,
        }[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            path = str(locate())
    except (ImportError, KeyError) as exc:
        raise FaceModelError(f"face model {name} is not installed ({exc})") from exc
    if not os.path.isfile(path):
        raise FaceModelError(f"face model file missing: {os.path.basename(path)}")
    return path


def _load(factory: Any, name: str) -> Any:
    path = model_path(name)
    try:
        return factory(path)
    except RuntimeError as exc:
        raise FaceModelError(f"cannot load face model {name}: {exc}") from exc


_THREAD = threading.local()


def _per_thread(name: str, make: Callable[[], Any]) -> Any:
    """This thread's own instance of a model (see the module docstring)."""
    held = getattr(_THREAD, name, None)
    if held is None:
        held = make()
        setattr(_THREAD, name, held)
    return held


def hog_detector() -> Any:
    """dlib's HOG + linear SVM frontal face detector (built in, no file); this thread's."""
    return _per_thread("hog", dlib.get_frontal_face_detector)


def cnn_detector() -> Any:
    """dlib's MMOD CNN face detector; this thread's."""
    return _per_thread("cnn", lambda: _load(dlib.cnn_face_detection_model_v1, MMOD))


@functools.cache
def five_point_predictor() -> Any:
    """dlib's 5-point landmark regressor (eye corners and nose base)."""
    return _load(dlib.shape_predictor, FIVE_POINT)


@functools.cache
def sixty_eight_point_predictor() -> Any:
    """dlib's 68-point landmark regressor (iBUG 300-W: jaw, brows, eyes, nose, mouth)."""
    return _load(dlib.shape_predictor, SIXTY_EIGHT_POINT)


def resnet() -> Any:
    """dlib's ResNet-29 face embedding network (128-d output); this thread's."""
    return _per_thread("resnet", lambda: _load(dlib.face_recognition_model_v1, RESNET))


def warm_up(detector: str) -> None:
    """Load every model the pipeline with ``detector`` needs."""
    if detector == DETECTOR_CNN:
        cnn_detector()
    else:
        hog_detector()
    if ALIGN_LANDMARKS == 68:
        sixty_eight_point_predictor()
    else:
        five_point_predictor()
    resnet()
