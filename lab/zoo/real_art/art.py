"""What every real-art source yields: styles (one artist's or set's drawings) of shared content.

A style maps content ids (the same subject in every style of its source: an icon name, a unit
tag, a card, a word) to a renderer that returns the drawing as RGBA, cropped to its ink. The
zoo places every drawing the same way on one plain canvas, so the only thing that differs
between two styles' drawings of one content is how it was drawn.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

BACKGROUND = (240, 240, 240)
RSVG = "rsvg-convert"
RSVG_PACKAGE = "librsvg2-bin"
MAX_UPSCALE = 4.0

Renderer = Callable[[int], Image.Image]  # box size in pixels -> RGBA drawing that fits in box x box


class ArtError(Exception):
    """A file that a source could not read or render, with its path."""


@dataclass
class ArtStyle:
    source: str  # "icons", "fonts", "freeciv", "cards", "mahjongg"
    key: str  # unique within the source; lower-case letters, digits, '.', '_', '-'
    name: str
    package: str  # the Debian binary package the drawings ship in
    family: str  # a priori family (derivation known from the data); near-duplicates merge more
    files: list[str]  # provenance: the files or directories read
    items: dict[str, Renderer] = field(default_factory=dict)  # content id -> renderer
    pixel_art: bool = False  # scale by whole factors with nearest neighbour, not resampled
    note: str = ""


@dataclass
class SourceScan:
    """One source's styles, and what is missing for the rest of it."""

    source: str
    styles: list[ArtStyle]
    missing: list[str] = field(default_factory=list)  # user-facing lines (each with its apt-get)
    skipped: list[str] = field(default_factory=list)  # unreadable files and why


def crop_to_ink(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is None:
        raise ArtError("the drawing is empty (fully transparent)")
    return rgba.crop(box)


def fit(image: Image.Image, box: int, pixel_art: bool = False) -> Image.Image:
    """Scale an RGBA drawing to fit box x box: whole factors for pixel art, Lanczos otherwise."""
    width, height = image.size
    if pixel_art:
        factor = max(1, min(box // width, box // height))
        if width * factor > box or height * factor > box:  # larger than the box: resample down
            return fit(image, box, pixel_art=False)
        return image.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    scale = min(box / width, box / height, MAX_UPSCALE)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def compose(drawing: Image.Image, size: int) -> Image.Image:
    """The drawing centred on the plain canvas (RGB)."""
    canvas = Image.new("RGBA", (size, size), (*BACKGROUND, 255))
    left = (size - drawing.width) // 2
    top = (size - drawing.height) // 2
    canvas.alpha_composite(drawing.convert("RGBA"), (left, top))
    return canvas.convert("RGB")


def art_box(size: int) -> int:
    return size - 2 * max(4, size // 10)


def render_item(style: ArtStyle, content: str, size: int) -> Image.Image:
    drawing = style.items[content](art_box(size))
    return compose(fit(crop_to_ink(drawing), art_box(size), style.pixel_art), size)


def have_rsvg() -> bool:
    return shutil.which(RSVG) is not None


def render_svg(
    path: Path, *, width: int | None = None, element: str | None = None, zoom: float = 1.0
) -> Image.Image:
    """An SVG (or .svgz) file, or one element of it by id, rasterised by librsvg's rsvg-convert."""
    if not have_rsvg():
        raise ArtError(f"{path}: SVG needs {RSVG} (apt-get install -y {RSVG_PACKAGE})")
    args = [RSVG, "--format", "png"]
    if width is not None:
        args += ["--width", str(width), "--keep-aspect-ratio"]
    else:
        args += ["--zoom", f"{zoom:.4f}"]
    if element is not None:
        args += ["--export-id", element]
    with tempfile.NamedTemporaryFile(suffix=".png") as out:
        result = subprocess.run([*args, "--output", out.name, str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ArtError(f"{path}: {RSVG} failed: {message[-1] if message else result.returncode}")
        with Image.open(out.name) as image:
            return image.convert("RGBA")


def load_png(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGBA")
    except OSError as exc:
        raise ArtError(f"{path}: not a readable image ({exc})") from exc


def thumbnail(image: Image.Image, side: int = 32) -> NDArray[np.float32]:
    """A small RGB array for near-duplicate tests (0..255)."""
    small = image.convert("RGB").resize((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)
