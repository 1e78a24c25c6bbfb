"""Cleansing, Eq. 1 (docs/design.md 5): drop transfers that failed to impart a style.

Note the sum over the three channels (not a mean), per pixel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 0.01


_ROWS = 256  # rows per block: memory stays small for a 40-megapixel catalog image


def transfer_mse(transfer: Image.Image, original: Image.Image) -> float:
    """Eq. 1; the original is resized to the transfer's size when they differ. Summed exactly in
    integers, a block of rows at a time (float64 copies of a whole 40-megapixel pair took ~4 GB)."""
    a = np.asarray(transfer.convert("RGB"))
    if original.size != transfer.size:
        original = original.resize(transfer.size, Image.Resampling.BILINEAR)
    o = np.asarray(original.convert("RGB"))
    total = 0
    for start in range(0, a.shape[0], _ROWS):
        block = a[start : start + _ROWS].astype(np.int32) - o[start : start + _ROWS]
        total += int(np.einsum("ijk,ijk->", block, block, dtype=np.int64))
    pixels = int(a.shape[0]) * int(a.shape[1])
    return total / pixels
