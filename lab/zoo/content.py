"""Content images for the style zoo: real photographs shipped by scikit-image, plus drawn scenes.

Every content image comes from a *pool*, and pools never share a source photograph, a face or a
scene seed stream. Training content, evaluation reference samples and evaluation queries each
have their own pool, so "unseen content" in the benchmark means a different photograph, not a
different crop of the same one. (`cat` and `chelsea` are the same photograph: one pool only.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

Pool = Literal["train", "eval-ref", "eval-query"]

PHOTOS: dict[Pool, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "camera",
        "coffee",
        "coins",
        "horse",
        "moon",
        "rocket",
        "text",
        "clock",
        "grass",
        "brick",
        "cell",
    ),
    "eval-ref": (
        "chelsea",
        "cat",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "colorwheel",
        "logo",
    ),
    "eval-query": ("stereo_motorcycle", "gravel", "page", "microaneurysms"),
}
# lfw_subset: 200 crops of 25 px; the first 100 are faces, the other 100 background patches
# (skimage's docstring). Only the faces are "face" content, split disjointly by index.
LFW_FACES = range(0, 100)
FACES: dict[Pool, range] = {"train": range(0, 60), "eval-ref": range(60, 80), "eval-query": range(80, 100)}
# Separate integer streams for the drawn scenes of each pool.
SCENE_STREAM: dict[Pool, int] = {"train": 101, "eval-ref": 202, "eval-query": 303}

PHOTO_SHARE = 0.5
FACE_SHARE = 0.1


@dataclass(frozen=True)
class Content:
    image: Image.Image
    source: str  # "photo:<name>", "face:<index>" or "scene:<stream>:<n>": pools never share one


@functools.cache
def _photo(name: str) -> Image.Image:
    import skimage.data

    loaded = getattr(skimage.data, name)()
    array = np.asarray(loaded[0] if isinstance(loaded, tuple) else loaded)  # stereo pairs: left view
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8), "RGB")


@functools.cache
def _faces() -> NDArray[np.uint8]:
    import skimage.data

    faces = np.asarray(skimage.data.lfw_subset(), dtype=np.float64)  # type: ignore[no-untyped-call]
    return (np.clip(faces, 0.0, 1.0) * 255).astype(np.uint8)


def _crop_photo(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    side = min(photo.size)
    crop = max(32, int(side * rng.uniform(0.35, 1.0)))
    left = int(rng.integers(0, photo.width - crop + 1))
    top = int(rng.integers(0, photo.height - crop + 1))
    image = photo.crop((left, top, left + crop, top + crop)).resize((size, size), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _face(index: int, rng: np.random.Generator, size: int) -> Image.Image:
    gray = Image.fromarray(_faces()[index], "L").resize((size, size), Image.Resampling.BICUBIC)
    tint = rng.uniform(0.85, 1.0, size=3)
    array = np.asarray(gray, dtype=np.float32)[..., None] * tint[None, None, :]
    return Image.fromarray(array.clip(0, 255).astype(np.uint8), "RGB")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, size=3)
    return int(r), int(g), int(b)


def draw_scene(rng: np.random.Generator, size: int) -> Image.Image:
    """A simple drawn scene: sky/ground gradients, a sun, shapes, stripes and lines."""
    big = size * 2  # draw at 2x and downsample: anti-aliased edges
    top, bottom, ground = (np.array(_colour(rng), dtype=np.float32) for _ in range(3))
    horizon = int(big * rng.uniform(0.45, 0.8))
    t = np.linspace(0.0, 1.0, big, dtype=np.float32)[:, None, None]
    canvas = np.broadcast_to(top * (1 - t) + bottom * t, (big, big, 3)).copy()
    shade = np.linspace(rng.uniform(0.6, 1.0), 1.0, big - horizon, dtype=np.float32)[:, None, None]
    canvas[horizon:] = ground[None, None, :] * shade
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.6:
        r = int(big * rng.uniform(0.05, 0.14))
        cx, cy = int(rng.integers(r, big - r)), int(rng.integers(r, max(r + 1, horizon - r)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng))
    for _ in range(int(rng.integers(3, 9))):
        kind = rng.choice(["ellipse", "rect", "polygon", "stripes"])
        x0, y0 = (int(v) for v in rng.integers(0, big, size=2))
        w, h = (int(v) for v in rng.integers(big // 10, big // 2, size=2))
        box = (x0, y0, x0 + w, y0 + h)
        outline = _colour(rng) if rng.random() < 0.4 else None
        if kind == "ellipse":
            draw.ellipse(box, fill=_colour(rng), outline=outline, width=3)
        elif kind == "rect":
            draw.rectangle(box, fill=_colour(rng), outline=outline, width=3)
        elif kind == "polygon":
            points = [(int(x), int(y)) for x, y in rng.integers(0, big, size=(int(rng.integers(3, 7)), 2))]
            draw.polygon(points, fill=_colour(rng), outline=outline)
        else:
            step = int(rng.integers(6, 20))
            colour_a, colour_b = _colour(rng), _colour(rng)
            for k, y in enumerate(range(y0, y0 + h, step)):
                draw.rectangle((x0, y, x0 + w, y + step // 2), fill=colour_a if k % 2 else colour_b)
    for _ in range(int(rng.integers(0, 4))):
        points = [(int(x), int(y)) for x, y in rng.integers(0, big, size=(2, 2))]
        draw.line(points, fill=_colour(rng), width=int(rng.integers(2, 8)))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def sample_content(pool: Pool, rng: np.random.Generator, size: int, scene_index: int) -> Content:
    """One content image from `pool`; `scene_index` numbers drawn scenes within the pool's stream."""
    roll = rng.random()
    if roll < PHOTO_SHARE:
        name = str(rng.choice(PHOTOS[pool]))
        return Content(_crop_photo(_photo(name), rng, size), f"photo:{name}")
    if roll < PHOTO_SHARE + FACE_SHARE:
        index = int(rng.choice(FACES[pool]))
        return Content(_face(index, rng, size), f"face:{index}")
    scene_rng = np.random.default_rng([SCENE_STREAM[pool], scene_index])
    return Content(draw_scene(scene_rng, size), f"scene:{SCENE_STREAM[pool]}:{scene_index}")
