"""Safe image decoding: every image from a user or a catalog passes through here.

Byte cap before decoding, format allowlist, pixel cap (decompression bombs), full decode so
truncated files fail here rather than later, EXIF orientation applied, any mode made RGB.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ImageRejected(ValueError):
    """The bytes are not an image findlora accepts; the message is safe to show to a user."""


def decode_image(
    data: bytes,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    name: str = "image",
) -> Image.Image:
    if not data:
        raise ImageRejected(f"{name} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"{name} is {width}x{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels"
                )
            probe.load()  # full decode: truncated data fails here
            image = ImageOps.exif_transpose(probe)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            f"{name} has too many pixels to decode safely; the limit is {max_pixels / 1e6:.0f} megapixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            f"{name} is not a readable image: corrupt, or not one of {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"{name} is corrupt or truncated ({exc})") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (P, LA, RGBA, CMYK, I;16, ...) to 8-bit RGB; transparency over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


FILE_MAX_BYTES = 50 * 1024 * 1024  # catalog and generated files may be larger than uploads


def decode_image_file(path: Path, data: bytes) -> Image.Image:
    """Decode bytes already read from `path` (errors name the path)."""
    return decode_image(data, max_bytes=FILE_MAX_BYTES, name=str(path))


def load_image_file(
    path: Path, *, max_bytes: int = FILE_MAX_BYTES, max_pixels: int = 40_000_000
) -> Image.Image:
    return decode_image(path.read_bytes(), max_bytes=max_bytes, max_pixels=max_pixels, name=str(path))


def thumbnail_webp(image: Image.Image, max_px: int = 256, quality: int = 80) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()
