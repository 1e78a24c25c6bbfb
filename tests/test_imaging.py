"""Safe decoding: every bad image gets a clear ImageRejected; odd modes become RGB."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from inference_service.imaging import ImageRejected, decode_image


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not a readable image"),
        (b"<html><body>hi</body></html>", "not a readable image"),
        (b"%PDF-1.4 not really", "not a readable image"),
    ],
)
def test_rejects_non_images(data: bytes, message: str) -> None:
    with pytest.raises(ImageRejected, match=message):
        decode_image(data)


def test_rejects_truncated_png_and_jpeg() -> None:
    image = Image.effect_noise((64, 64), 50).convert("RGB")
    for fmt in ("PNG", "JPEG"):
        data = encode(image, fmt)
        with pytest.raises(ImageRejected, match="corrupt or truncated"):
            decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("side", [8000, 20000])
def test_rejects_huge_pixel_counts_before_decoding(side: int) -> None:
    # One-colour PNGs compress to almost nothing: 64 MP and 400 MP (a decompression bomb).
    data = encode(Image.new("1", (side, side)))
    assert len(data) < 1_000_000
    with pytest.raises(ImageRejected, match="megapixels"):
        decode_image(data, max_pixels=40_000_000)


def test_rejects_oversized_bytes() -> None:
    with pytest.raises(ImageRejected, match="limit"):
        decode_image(b"\x89PNG" + b"\0" * 2000, max_bytes=1000)


@pytest.mark.parametrize("mode", ["CMYK", "P", "LA", "RGBA", "I;16", "L"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    image = Image.new("RGB", (16, 16), (200, 30, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB"
    assert decoded.size == (16, 16)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    decoded = decode_image(encode(image, "JPEG", exif=exif))
    assert decoded.size == (20, 40)


def test_transparency_goes_over_white() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_image(encode(image)).getpixel((0, 0)) == (255, 255, 255)
