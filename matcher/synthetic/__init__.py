"""Deterministic synthetic fingerprints in the spirit of SFinGe (Cappelli, Maio, Maltoni).

No real biometric data goes into this repository: tests, the demo and benchmarks use this
generator. Pipeline (one stage per module):

* :mod:`layout` — class, singular points, tilt, silhouette and mean period from a seed;
* :mod:`orientation` — Sherlock–Monro orientation field with a Vizcaya–Gerhardt style warp;
* :mod:`density` — the ridge period map;
* :mod:`ridges` — the ridge pattern grown by iterative Gabor (contextual) filtering;
* :mod:`master` — :func:`make_master` ties them together (the finger's ground truth);
* :mod:`impression` — :func:`make_impression`: placement, elastic distortion, pressure, skin
  condition and sensor noise;
* :mod:`dataset` — :func:`write_dataset` writes an FVC-layout database;
* :mod:`templates` — :func:`synthetic_templates`, minutiae templates without images for very
  large galleries.

Same seed ⇒ byte-identical output (on one platform: the FFTs are numpy's). Command line:
``python -m matcher.synthetic DIR --fingers 10 --impressions 8 --seed 0``.
"""

from matcher.synthetic.dataset import write_dataset
from matcher.synthetic.errors import SyntheticParameterError
from matcher.synthetic.impression import (
    PROFILES,
    Impression,
    ImpressionProfile,
    make_impression,
    render_impression,
)
from matcher.synthetic.master import MasterFingerprint, make_master
from matcher.synthetic.params import CLASSES
from matcher.synthetic.templates import synthetic_templates

__all__ = [
    "CLASSES",
    "PROFILES",
    "Impression",
    "ImpressionProfile",
    "MasterFingerprint",
    "SyntheticParameterError",
    "make_impression",
    "make_master",
    "render_impression",
    "synthetic_templates",
    "write_dataset",
]
