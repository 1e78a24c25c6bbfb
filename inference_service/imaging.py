"""Safe image decoding: every image from a user or a catalog passes through here.

Byte cap before decoding, format allowlist, pixel cap (decompression bombs), full decode so
truncated files fail here rather than later, EXIF orientation applied, any mode made RGB.
With `working_pixels` (uploads), an image larger than that is reduced to it (bicubic) before
it is returned and the full-size pixels are dropped, so what a request holds is small. JPEG's
DCT-scaled decoding (Image.draft) would avoid the full-size pixels altogether, but it moved style
embeddings about as much as re-encoding as JPEG does, several times more than full decode plus
bicubic (docs/reliability.md, "Bounded work"); the full size exists only in a decode worker.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ImageRejected(ValueError):
    """The bytes are not an image findlora accepts; the message is safe to show to a user."""


def megapixels(pixels: int) -> str:
    """16777216 -> "16.8", 40000000 -> "40": how limits are written in messages."""
    return f"{round(pixels / 1e6, 1):g}"


def check_size(data: bytes, max_bytes: int, name: str) -> None:
    """The byte checks that need no decoding (empty, over the cap)."""
    if not data:
        raise ImageRejected(f"{name} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")


def working_size(size: tuple[int, int], working_pixels: int) -> tuple[int, int]:
    """`size` scaled (aspect kept) to at most `working_pixels` pixels; unchanged when within."""
    width, height = size
    if width * height <= working_pixels:
        return size
    scale = math.sqrt(working_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def decode_image(
    data: bytes,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    name: str = "image",
    working_pixels: int | None = None,
) -> Image.Image:
    check_size(data, max_bytes, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"{name} is {width}x{height} pixels; the limit is {megapixels(max_pixels)} megapixels"
                )
            image.load()  # full decode: truncated data fails here
            ImageOps.exif_transpose(image, in_place=True)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            f"{name} has too many pixels to decode safely; the limit is {megapixels(max_pixels)} megapixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            f"{name} is not a readable image: corrupt, or not one of {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"{name} is corrupt or truncated ({exc})") from None
    rgb = to_rgb(image)
    del image  # the decoded original (another mode) is not needed past here
    if working_pixels is None:
        return rgb
    return reduce_to(rgb, working_pixels)


def reduce_to(image: Image.Image, working_pixels: int) -> Image.Image:
    """The image at no more than `working_pixels` (bicubic, as CLIP and BLIP resample); the
    same object when it is within."""
    size = working_size(image.size, working_pixels)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


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
    size = path.stat().st_size
    if size > max_bytes:  # before reading it: a multi-GB file is refused without loading it
        raise ImageRejected(f"{path} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    return decode_image(path.read_bytes(), max_bytes=max_bytes, max_pixels=max_pixels, name=str(path))


def thumbnail_webp(image: Image.Image, max_px: int = 256, quality: int = 80) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()
