"""Eq. 1 (cleansing): the exact value, and memory that does not grow with float copies of a
40-megapixel catalog image."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference_service.imaging import ImageRejected, load_image_file
from inference_service.scoring.cleansing import transfer_mse


def test_transfer_mse_is_the_per_pixel_channel_sum_averaged() -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (300, 200, 3), dtype=np.uint8) for _ in range(2))
    expected = ((a.astype(float) - b) ** 2).sum(axis=2).mean()
    assert transfer_mse(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(expected, rel=1e-12)
    assert transfer_mse(Image.fromarray(a), Image.fromarray(a)) == 0.0


def test_a_large_pair_is_compared_without_float_copies_of_it() -> None:
    first, second = Image.new("RGB", (4000, 4000), (10, 20, 30)), Image.new("RGB", (4000, 4000), (12, 20, 33))
    tracemalloc.start()
    try:
        assert transfer_mse(first, second) == 13.0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300e6  # four float64 copies of the pair took about 1.5 GB


def test_an_image_file_over_the_cap_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:  # sparse: 3 GB on paper, nothing on disk
        handle.truncate(3 * 1024**3)

    def never(self: Path) -> bytes:
        raise AssertionError(f"{self} was read whole")

    monkeypatch.setattr(Path, "read_bytes", never)
    with pytest.raises(ImageRejected, match=r"huge\.png is 3221\.2 MB; the limit is"):
        load_image_file(huge)
