"""Stage 8: topology-preserving parallel thinning to an 8-connected, one-pixel-wide skeleton.

Four directional sub-iterations (north, south, east, west borders) remove every border pixel
that is *simple* (Yokoi 8-connectivity number 1) and not an end point; one 256-entry lookup
table per direction decides from the 3x3 neighbourhood code, so each pass is a handful of
whole-array numpy operations.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.bool_]

#: Neighbour offsets (dy, dx) in ring order E, NE, N, NW, W, SW, S, SE; bit i of a code is
#: neighbour i.
RING = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
_E, _N, _W, _S = 0, 2, 4, 6


def _code_kernel() -> npt.NDArray[np.float32]:
    k = np.zeros((3, 3), dtype=np.float32)
    for bit, (dy, dx) in enumerate(RING):
        k[1 + dy, 1 + dx] = 1 << bit
    return k


_CODE_KERNEL = _code_kernel()


def neighbour_codes(img: Mask) -> npt.NDArray[np.uint8]:
    """8-bit neighbourhood code (H, W) uint8 of a binary (H, W) image (outside = 0).

    One correlation with the powers of two of the ring positions (exact in int16).
    """
    code = cv2.filter2D(
        img.astype(np.uint8), cv2.CV_16S, _CODE_KERNEL, borderType=cv2.BORDER_CONSTANT
    )
    return np.asarray(code, dtype=np.uint8)


def _bits(code: int) -> list[int]:
    return [(code >> i) & 1 for i in range(8)]


def yokoi8(code: int) -> int:
    """Yokoi connectivity number for 8-connectivity of a neighbourhood code."""
    x = [1 - b for b in _bits(code)]
    x.append(x[0])
    x.append(x[1])
    return sum(x[k] - x[k] * x[k + 1] * x[k + 2] for k in (0, 2, 4, 6))


def _luts() -> npt.NDArray[np.bool_]:
    lut = np.zeros((4, 256), dtype=bool)
    for code in range(256):
        b = _bits(code)
        removable = sum(b) >= 2 and yokoi8(code) == 1
        for d, side in enumerate((_N, _S, _E, _W)):
            lut[d, code] = removable and b[side] == 0
    return lut


_LUT = _luts()


def thin(ridges: Mask, max_iterations: int = 100) -> Mask:
    """Skeleton (H, W) bool of a binary ridge image (H, W) bool."""
    img = ridges.copy()
    for _ in range(max_iterations):
        changed = False
        for d in range(4):
            remove = img & _LUT[d][neighbour_codes(img)]
            if remove.any():
                img &= ~remove
                changed = True
        if not changed:
            break
    return img
