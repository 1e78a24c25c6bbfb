"""Cleansing, Eq. 1 (docs/design.md 5): drop transfers that failed to impart a style.

Note the sum over the three channels (not a mean), per pixel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 0.01


def transfer_mse(transfer: Image.Image, original: Image.Image) -> float:
    """Eq. 1; the original is resized to the transfer's size when they differ."""
    a = np.asarray(transfer.convert("RGB"), dtype=np.float64)
    if original.size != transfer.size:
        original = original.resize(transfer.size, Image.Resampling.BILINEAR)
    o = np.asarray(original.convert("RGB"), dtype=np.float64)
    return float(((a - o) ** 2).sum(axis=2).mean())
