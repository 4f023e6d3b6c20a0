"""One opened PIL image to (H, W, 3) uint8 RGB, for every mode PIL gives, 16-bit included.

``Image.convert("RGB")`` is right for 8-bit modes (L, P, RGBA, CMYK, …) but clips the 16-bit
greyscale modes (``I;16``, and ``I`` from a 16-bit PNG) at 255, which turns a normal 16-bit image
almost white. Those are scaled from [0, 65535] to [0, 255] here (v ↦ round(v / 257), exact for
values an 8-bit image scaled up by 257 holds). Float images (mode ``F``) have no agreed range and
are refused.
"""

from __future__ import annotations

import numpy as np

from ddlib.errors import DDLibError

SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def rgb_array(img, name: str) -> np.ndarray:
    """``img`` (an open PIL image called ``name`` in messages) as an (H, W, 3) uint8 array."""
    if img.mode in SIXTEEN_BIT:
        a = np.asarray(img, dtype=np.int64)
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            raise DDLibError(f"{name}: 32-bit integer pixels outside 0…65535; save it as an 8- or 16-bit image")
        grey = np.round(a / 257.0).astype(np.uint8)  # (H, W)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode == "F":
        raise DDLibError(f"{name}: floating-point pixels (mode F) have no fixed range; save it as an 8- or 16-bit image")
    return np.asarray(img.convert("RGB"))
