"""Impressions: what a sensor captures when a master finger touches it.

From a master and a seed: the finger is placed (rotation, translation), the skin is stretched
(Cappelli's elastic model: a close region around the contact centre moves rigidly, the skin
beyond it is dragged by a small extra rotation/translation through a smooth brake, plus a
small smooth random warp), pressure decides the contact area (the silhouette scaled about a
wandering contact centre, sometimes cut by a lifted edge), skin condition changes the ridges
(dry: thin and broken; wet: thick and merged), and the sensor adds background, uneven
contrast, blur, noise and gamma. Every step is a whole-array operation; geometry is one
``cv2.remap``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from matcher.synthetic import params as P
from matcher.synthetic.errors import SyntheticParameterError
from matcher.synthetic.master import MasterFingerprint, check_seed
from matcher.synthetic.noise import smooth_field

F32 = npt.NDArray[np.float32]
SKINS = ("dry", "normal", "wet")


@dataclass(frozen=True)
class ImpressionProfile:
    """How hard the captures are. Factors scale the ranges in :mod:`params`.

    ``skin`` is the probability of (dry, normal, wet); ``partial`` the probability that an edge
    of the finger is lifted off the sensor; ``shape`` the output (H, W).
    """

    name: str
    placement: float = 1.0
    distortion: float = 1.0
    pressure: tuple[float, float] = P.PRESSURE_SCALE
    skin: tuple[float, float, float] = (0.25, 0.5, 0.25)
    noise: float = 1.0
    partial: float = 0.2
    shape: tuple[int, int] = field(default=P.IMPRESSION_SHAPE)

    def __post_init__(self) -> None:
        if not (0 <= self.placement <= 3 and 0 <= self.distortion <= 3 and 0 <= self.noise <= 3):
            raise SyntheticParameterError(
                "profile factors must lie in [0, 3]", reason="bad_profile"
            )
        lo, hi = self.pressure
        if not 0.3 <= lo <= hi <= 1.2:
            raise SyntheticParameterError(
                "pressure range must lie in [0.3, 1.2]", reason="bad_profile"
            )
        if len(self.skin) != 3 or min(self.skin) < 0 or not np.isclose(sum(self.skin), 1.0):
            raise SyntheticParameterError("skin probabilities must sum to 1", reason="bad_profile")
        if not 0 <= self.partial <= 1:
            raise SyntheticParameterError("partial must be a probability", reason="bad_profile")
        if min(self.shape) < 32:
            raise SyntheticParameterError(
                "impression shape must be at least 32x32", reason="bad_profile"
            )


PROFILES = {
    "clean": ImpressionProfile(
        "clean",
        placement=0.5,
        distortion=0.5,
        pressure=(0.9, 1.0),
        skin=(0.0, 1.0, 0.0),
        noise=0.5,
        partial=0.0,
    ),
    "typical": ImpressionProfile("typical"),
    "hard": ImpressionProfile(
        "hard",
        placement=1.3,
        distortion=1.4,
        pressure=(0.6, 0.95),
        skin=(0.4, 0.2, 0.4),
        noise=1.6,
        partial=0.35,
    ),
}


@dataclass(frozen=True, eq=False)
class Impression:
    """One capture. ``image`` (H, W) uint8; ``map_x``/``map_y`` (H, W) float32 master-canvas
    coordinates seen at each pixel (the ground-truth geometry); ``contact`` (H, W) float32 in
    [0, 1], how much finger touches each pixel; ``skin`` the condition drawn."""

    image: npt.NDArray[np.uint8]
    map_x: F32
    map_y: F32
    contact: F32
    skin: str


def resolve_profile(profile: str | ImpressionProfile) -> ImpressionProfile:
    if isinstance(profile, ImpressionProfile):
        return profile
    if profile not in PROFILES:
        raise SyntheticParameterError(
            f"unknown impression profile {profile!r}; expected one of {', '.join(PROFILES)}",
            reason="unknown_profile",
        )
    return PROFILES[profile]


def _geometry(
    master: MasterFingerprint, prof: ImpressionProfile, rng: np.random.Generator
) -> tuple[F32, F32, npt.NDArray[np.float64]]:
    """Inverse map (output pixel → master coordinates) and the contact centre (2,)."""
    h, w = prof.shape
    centre = master.layout.flow.centre[0] + rng.uniform(-1, 1, 2) * P.CONTACT_CENTRE_JITTER
    angle = rng.uniform(-1, 1) * P.ROTATION_MAX * prof.placement
    shift = rng.uniform(-1, 1, 2) * P.TRANSLATION_MAX * prof.placement
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    qx = xs - (w - 1) / 2.0 - shift[0]
    qy = ys - (h - 1) / 2.0 - shift[1]
    c, s = np.cos(angle), np.sin(angle)
    # Rigid part, relative to the contact centre in master coordinates.
    rx = c * qx + s * qy
    ry = -s * qx + c * qy
    # Cappelli-style drag of the skin outside the close region.
    close = rng.uniform(*P.DISTORTION_CLOSE_RADIUS)
    brake_width = rng.uniform(*P.DISTORTION_BRAKE_WIDTH)
    d_angle = rng.uniform(-1, 1) * P.DISTORTION_ROTATION * prof.distortion
    d_shift = rng.uniform(-1, 1, 2) * P.DISTORTION_TRANSLATION * prof.distortion
    t = np.clip((np.hypot(rx, ry) - close) / brake_width, 0.0, 1.0)
    brake = t * t * (3.0 - 2.0 * t)  # smoothstep: no kink at either end of the brake zone
    dc, ds = np.cos(d_angle), np.sin(d_angle)
    dx = (dc * rx - ds * ry + d_shift[0]) - rx
    dy = (ds * rx + dc * ry + d_shift[1]) - ry
    warp = P.WARP_AMPLITUDE * prof.distortion
    map_x = centre[0] + rx + brake * dx + warp * smooth_field(rng, (h, w), P.WARP_SMOOTHING)
    map_y = centre[1] + ry + brake * dy + warp * smooth_field(rng, (h, w), P.WARP_SMOOTHING)
    return map_x.astype(np.float32), map_y.astype(np.float32), centre


def _contact(
    master: MasterFingerprint,
    map_x: F32,
    map_y: F32,
    centre: npt.NDArray[np.float64],
    prof: ImpressionProfile,
    rng: np.random.Generator,
) -> F32:
    """Contact weight (H, W) in [0, 1]: the silhouette shrunk by pressure, soft-edged."""
    scale = rng.uniform(*prof.pressure)
    lx = (map_x - centre[0]) / scale + centre[0]
    ly = (map_y - centre[1]) / scale + centre[1]
    level = master.layout.level(lx[None], ly[None])[0]
    radius = float(master.layout.semi[0].min()) * scale
    contact = np.clip((1.0 - level) * radius / P.CONTACT_EDGE, 0.0, 1.0)
    if rng.random() < prof.partial:  # a lifted edge: cut by a soft half-plane
        phi = rng.uniform(0, 2 * np.pi)
        depth = rng.uniform(*P.PARTIAL_DEPTH) * radius
        along = (map_x - centre[0]) * np.cos(phi) + (map_y - centre[1]) * np.sin(phi)
        contact = contact * np.clip((depth - along) / P.CONTACT_EDGE, 0.0, 1.0)
    return contact.astype(np.float32)


def _ink(pattern: F32, skin: str, prof: ImpressionProfile, rng: np.random.Generator) -> F32:
    """Ink (H, W) in [0, 1] from the remapped ridge pattern and the skin condition."""
    shape = pattern.shape[0], pattern.shape[1]
    ranges = {"dry": P.DRY_THRESHOLD, "wet": P.WET_THRESHOLD, "normal": P.NORMAL_THRESHOLD}
    level = rng.uniform(*ranges[skin])
    ink = np.clip((pattern - level) / P.INK_SOFTNESS + 0.5, 0.0, 1.0).astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (P.MORPH_KERNEL, P.MORPH_KERNEL))
    if skin == "dry":
        ink = cv2.erode(ink, kernel)
        fraction = rng.uniform(*P.DRY_BREAKS)
        blotches = smooth_field(rng, shape, P.BREAK_SMOOTHING)
        ink = ink * (blotches > np.quantile(blotches, fraction))
    elif skin == "wet":
        ink = cv2.dilate(ink, kernel)
    # Pores and uneven inking: small white dots on the ridges.
    dots = smooth_field(rng, shape, P.PORE_SCALE)
    ink = ink * (dots < np.quantile(dots, 1.0 - rng.uniform(*P.PORE_FRACTION)))
    # Uneven pressure across the pad: ink strength varies slowly.
    strength = 1.0 - P.PRESSURE_UNEVENNESS * np.abs(
        smooth_field(rng, shape, P.BACKGROUND_SMOOTHING)
    )
    return (ink * strength).astype(np.float32)


def render_impression(
    master: MasterFingerprint, seed: int, *, profile: str | ImpressionProfile = "typical"
) -> Impression:
    """Impression ``seed`` of ``master`` with its ground-truth geometry and contact mask."""
    seed = check_seed(seed)
    prof = resolve_profile(profile)
    rng = np.random.default_rng(np.random.SeedSequence([master.seed, seed]))
    map_x, map_y, centre = _geometry(master, prof, rng)
    contact = _contact(master, map_x, map_y, centre, prof, rng)
    skin = SKINS[int(rng.choice(3, p=np.asarray(prof.skin)))]
    pattern = np.asarray(
        cv2.remap(
            master.ridges,
            map_x,
            map_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=-1.0,
        ),
        dtype=np.float32,
    )
    ink = _ink(pattern, skin, prof, rng) * contact
    shape = ink.shape[0], ink.shape[1]
    background = rng.uniform(*P.BACKGROUND_LEVEL) + P.BACKGROUND_VARIATION * prof.noise * (
        smooth_field(rng, shape, P.BACKGROUND_SMOOTHING)
    )
    grey = background - rng.uniform(*P.INK_CONTRAST) * ink
    grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), rng.uniform(*P.BLUR_SIGMA))
    grey = grey + rng.normal(0.0, rng.uniform(*P.NOISE_SIGMA) * prof.noise, shape)
    unit = np.clip(grey / 255.0, 0.0, 1.0) ** rng.uniform(*P.GAMMA)
    image = np.rint(unit * 255.0).astype(np.uint8)
    return Impression(image=image, map_x=map_x, map_y=map_y, contact=contact, skin=skin)


def make_impression(
    master: MasterFingerprint, seed: int, *, profile: str | ImpressionProfile = "typical"
) -> npt.NDArray[np.uint8]:
    """Impression ``seed`` of ``master`` as a (H, W) uint8 image at 500 ppi (dark ridges)."""
    return render_impression(master, seed, profile=profile).image
