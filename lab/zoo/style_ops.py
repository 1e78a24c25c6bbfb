"""Parametric image styles: the stand-in for LoRAs in the style zoo.

A style is a short pipeline of operations with sampled parameters: a tone/hue grade, one
*primary* look (gradient map, posterise, palette, halftone, dither, painterly, pixel art, pencil
sketch, cel shading, watercolour) and optional ink outlines, texture overlay and vignette.
`lookalike` derives a near copy of a style (every parameter nudged, one extra changed) so
the benchmark contains pairs that only fine differences tell apart. Each application also
jitters the grade a little, as a real LoRA never produces exactly the same colours twice.

Images are float32 arrays (H, W, 3) in 0..1; everything is numpy/PIL and takes a few ms at 160 px.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

Array = NDArray[np.float32]
Params = dict[str, Any]

PRIMARIES = (
    "gradient_map",
    "posterise",
    "palette",
    "halftone",
    "dither",
    "painterly",
    "pixel",
    "sketch",
    "cel",
    "watercolour",
)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ).astype(np.float32)
BAYER_2 = np.array([[0, 2], [3, 1]], dtype=np.float32)


@dataclass
class StyleSpec:
    primary: str
    ops: list[tuple[str, Params]] = field(default_factory=list)
    lookalike_of: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "ops": [[name, params] for name, params in self.ops],
            "lookalike_of": self.lookalike_of,
        }


# ----------------------------------------------------------------------------- helpers


def _f32(value: Any) -> Array:
    return np.asarray(value, dtype=np.float32)


def _unit(value: float) -> float:
    """Nudged lookalike parameters may leave 0..1; mixing weights must not."""
    return float(min(max(value, 0.0), 1.0))


def _luma(img: Array) -> Array:
    return (img @ LUMA).astype(np.float32)


def _colour(rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> list[float]:
    return [float(v) for v in rng.uniform(low, high, size=3)]


def _to_pil(img: Array) -> Image.Image:
    return Image.fromarray((np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), "RGB")


def _from_pil(image: Image.Image) -> Array:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _edges(gray: Array) -> Array:
    gy, gx = np.gradient(gray)
    return _f32(np.sqrt(gx * gx + gy * gy))


def _edge_mask(img: Array, percentile: float, thickness: int) -> Array:
    edges = _edges(_luma(img))
    mask = (edges > np.percentile(edges, percentile)).astype(np.uint8) * 255
    pil = Image.fromarray(mask, "L")
    if thickness > 1:
        pil = pil.filter(ImageFilter.MaxFilter(2 * (thickness // 2) + 1))
    return np.asarray(pil, dtype=np.float32) / 255.0


def _bayer(n: int) -> Array:
    matrix = BAYER_2
    while matrix.shape[0] < n:
        matrix = np.block([[4 * matrix, 4 * matrix + 2], [4 * matrix + 3, 4 * matrix + 1]])
    return ((matrix + 0.5) / matrix.size).astype(np.float32)


def _tile(pattern: Array, shape: tuple[int, int]) -> Array:
    reps = (math.ceil(shape[0] / pattern.shape[0]), math.ceil(shape[1] / pattern.shape[1]))
    return np.tile(pattern, reps)[: shape[0], : shape[1]]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> Array:
    small = (max(2, int(shape[0] / scale)), max(2, int(shape[1] / scale)))
    noise = Image.fromarray((rng.random(small) * 255).astype(np.uint8), "L")
    return np.asarray(noise.resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


# ----------------------------------------------------------------------------- operations


def op_grade(img: Array, p: Params, rng: np.random.Generator) -> Array:
    hue = math.radians(p["hue"] + rng.normal(0.0, 3.0))
    rot = np.array(
        [[1, 0, 0], [0, math.cos(hue), -math.sin(hue)], [0, math.sin(hue), math.cos(hue)]], np.float32
    )
    sat = np.diag([1.0, p["saturation"], p["saturation"]]).astype(np.float32)
    matrix = YIQ_TO_RGB @ sat @ rot @ RGB_TO_YIQ
    x = img @ matrix.T
    brightness = p["brightness"] + rng.normal(0.0, 0.02)
    x = np.clip((x - 0.5) * p["contrast"] + 0.5 + brightness, 0.0, 1.0) ** p["gamma"]
    luma = _luma(x)[..., None]
    shadow, highlight = np.array(p["shadow"], np.float32), np.array(p["highlight"], np.float32)
    x = x + p["tone"] * ((1.0 - luma) * (shadow - 0.5) + luma * (highlight - 0.5))
    return _f32(np.clip(x, 0.0, 1.0))


def op_gradient_map(img: Array, p: Params, rng: np.random.Generator) -> Array:
    palette = np.array(p["palette"], dtype=np.float32)
    luma = _luma(img)
    steps = len(palette) - 1
    if p["hard"]:
        index = np.clip((luma * len(palette)).astype(np.int64), 0, steps)
        mapped = palette[index]
    else:
        pos = luma * steps
        low = np.clip(np.floor(pos).astype(np.int64), 0, steps - 1)
        frac = (pos - low)[..., None]
        mapped = palette[low] * (1 - frac) + palette[low + 1] * frac
    amount = _unit(p["amount"])
    return (amount * mapped + (1 - amount) * img).astype(np.float32)


def op_posterise(img: Array, p: Params, rng: np.random.Generator) -> Array:
    levels = np.array(p["levels"], dtype=np.float32)
    return (np.round(img * (levels - 1)) / (levels - 1)).astype(np.float32)


def _nearest(img: Array, palette: Array) -> Array:
    distances = ((img[..., None, :] - palette[None, None]) ** 2).sum(axis=3)
    return _f32(palette[distances.argmin(axis=2)])


def op_palette(img: Array, p: Params, rng: np.random.Generator) -> Array:
    palette = np.array(p["palette"], dtype=np.float32)
    if p["dither"]:
        img = img + (_tile(_bayer(4), img.shape[:2])[..., None] - 0.5) * 0.25
    return _nearest(img, palette).astype(np.float32)


def op_halftone(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cell = p["cell"]

    def screen(angle: float) -> Array:
        a = math.radians(angle)
        u = xx * math.cos(a) + yy * math.sin(a)
        v = -xx * math.sin(a) + yy * math.cos(a)
        return _f32((np.cos(2 * math.pi * u / cell) + np.cos(2 * math.pi * v / cell)) / 4 + 0.5)

    ink, paper = np.array(p["ink"], np.float32), np.array(p["paper"], np.float32)
    if p["mode"] == "mono":
        dots = (_luma(img) < screen(p["angle"]))[..., None].astype(np.float32)
        return (dots * ink + (1 - dots) * paper).astype(np.float32)
    channels = [(img[..., c] > screen(p["angle"] + 15 * c)).astype(np.float32) for c in range(3)]
    return (np.stack(channels, axis=2) * paper).astype(np.float32)


def op_dither(img: Array, p: Params, rng: np.random.Generator) -> Array:
    levels = p["levels"]
    threshold = _tile(_bayer(p["matrix"]), img.shape[:2])[..., None]
    if p["mono"]:
        dark, light = np.array(p["dark"], np.float32), np.array(p["light"], np.float32)
        value = np.floor(_luma(img)[..., None] * (levels - 1) + threshold) / (levels - 1)
        return _f32(dark + (light - dark) * np.clip(value, 0, 1))
    return _f32(np.clip(np.floor(img * (levels - 1) + threshold) / (levels - 1), 0, 1))


def op_painterly(img: Array, p: Params, rng: np.random.Generator) -> Array:
    pil = _to_pil(img).filter(ImageFilter.MedianFilter(p["median"] | 1))
    pil = pil.filter(ImageFilter.GaussianBlur(p["blur"]))
    x = _from_pil(pil)
    edges = _edges(_luma(x))
    edges = edges / (edges.max() + 1e-6)
    x = x * (1 - _unit(p["edge_dark"]) * edges[..., None])
    mean = _luma(x)[..., None]
    return _f32(np.clip(mean + (x - mean) * p["saturation"], 0, 1))


def op_pixel(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    factor = p["factor"]
    small = _to_pil(img).resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
    small = small.quantize(colors=p["colors"], method=Image.Quantize.MEDIANCUT).convert("RGB")
    return _from_pil(small.resize((w, h), Image.Resampling.NEAREST))


def op_sketch(img: Array, p: Params, rng: np.random.Generator) -> Array:
    gray = _luma(img)
    blurred = _from_pil(
        _to_pil(np.stack([1 - gray] * 3, axis=2)).filter(ImageFilter.GaussianBlur(p["blur"]))
    )[..., 0]
    dodge = np.clip(gray / np.maximum(1 - blurred, 1e-3), 0, 1) ** p["darkness"]
    ink, paper = np.array(p["ink"], np.float32), np.array(p["paper"], np.float32)
    drawing = paper + (ink - paper) * (1 - dodge)[..., None]
    colour = _unit(p["colour"])
    return _f32((drawing * (1 - colour) + img * drawing * colour * 1.5).clip(0, 1))


def op_cel(img: Array, p: Params, rng: np.random.Generator) -> Array:
    x = _from_pil(_to_pil(img).filter(ImageFilter.MedianFilter(p["median"] | 1)))
    luma = _luma(x)[..., None]
    bands = np.round(luma * (p["bands"] - 1)) / (p["bands"] - 1)
    chroma = x / np.maximum(luma, 0.05)
    floor = _unit(p["floor"])
    shaded = np.clip(chroma * (floor + (1 - floor) * bands), 0, 1)
    mean = _luma(shaded)[..., None]
    return _f32(np.clip(mean + (shaded - mean) * p["saturation"], 0, 1))


def op_watercolour(img: Array, p: Params, rng: np.random.Generator) -> Array:
    x = _from_pil(_to_pil(img).filter(ImageFilter.GaussianBlur(p["blur"])))
    levels = p["levels"]
    x = np.round(x * (levels - 1)) / (levels - 1)
    x = _from_pil(_to_pil(x).filter(ImageFilter.GaussianBlur(p["blur"] / 2)))
    edges = _edges(_luma(x))
    x = x * (1 - p["edge_dark"] * np.clip(edges * 8, 0, 1)[..., None])
    wash = 1 - _unit(p["wash"]) * (1 - x)
    grain = _smooth_noise(rng, img.shape[:2], 6.0)[..., None]
    return _f32(np.clip(wash * (1 - 0.15 * p["wash"] * grain), 0, 1))


def op_outline(img: Array, p: Params, rng: np.random.Generator) -> Array:
    mask = _edge_mask(img, min(p["percentile"], 99.0), p["thickness"])[..., None] * _unit(p["opacity"])
    ink = np.array(p["ink"], np.float32)
    return (img * (1 - mask) + ink * mask).astype(np.float32)


def op_texture(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    kind, scale = p["kind"], p["scale"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = float(rng.uniform(0, 2 * math.pi))
    if kind == "grain":
        tex = rng.random((h, w)).astype(np.float32)
    elif kind == "paper":
        tex = _smooth_noise(rng, (h, w), scale * 3)
    elif kind == "canvas":
        tex = 0.5 + 0.25 * np.sin(2 * math.pi * xx / scale + phase) + 0.25 * np.sin(2 * math.pi * yy / scale)
    elif kind == "scanline":
        tex = (0.5 + 0.5 * np.sin(2 * math.pi * yy / scale + phase)).astype(np.float32)
    else:  # hatch: diagonal lines that appear where the image is dark
        lines = (np.sin(2 * math.pi * (xx + yy) / scale + phase) > 0.6).astype(np.float32)
        dark = (1 - _luma(img)) > 0.5
        tex = 1 - lines * dark
    tex = tex.astype(np.float32)[..., None]
    tint = np.array(p["tint"], np.float32)
    if p["blend"] == "multiply":
        textured = img * (1 - p["strength"] * (1 - tex * tint))
    else:  # overlay-like: push away from mid grey along the texture
        textured = img + p["strength"] * (tex - 0.5) * tint
    return _f32(np.clip(textured, 0, 1))


def op_vignette(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / math.sqrt(2)
    weight = (np.clip(r, 0, 1) ** 2 * _unit(p["strength"]))[..., None]
    return _f32(img * (1 - weight) + np.array(p["colour"], np.float32) * weight)


def op_chroma(img: Array, p: Params, rng: np.random.Generator) -> Array:
    shift = p["shift"]
    out = img.copy()
    out[..., 0] = np.roll(img[..., 0], shift, axis=1)
    out[..., 2] = np.roll(img[..., 2], -shift, axis=1)
    return out


OPS: dict[str, Callable[[Array, Params, np.random.Generator], Array]] = {
    "grade": op_grade,
    "gradient_map": op_gradient_map,
    "posterise": op_posterise,
    "palette": op_palette,
    "halftone": op_halftone,
    "dither": op_dither,
    "painterly": op_painterly,
    "pixel": op_pixel,
    "sketch": op_sketch,
    "cel": op_cel,
    "watercolour": op_watercolour,
    "outline": op_outline,
    "texture": op_texture,
    "vignette": op_vignette,
    "chroma": op_chroma,
}


# ----------------------------------------------------------------------------- sampling


def _sample_params(name: str, rng: np.random.Generator) -> Params:
    u = rng.uniform
    if name == "grade":
        return {
            "hue": float(u(-180, 180)),
            "saturation": float(u(0.2, 1.8)),
            "contrast": float(u(0.6, 1.5)),
            "brightness": float(u(-0.15, 0.15)),
            "gamma": float(u(0.6, 1.6)),
            "tone": float(u(0.0, 0.5)),
            "shadow": _colour(rng),
            "highlight": _colour(rng),
        }
    if name == "gradient_map":
        return {
            "palette": [_colour(rng) for _ in range(int(rng.integers(2, 6)))],
            "hard": bool(rng.random() < 0.4),
            "amount": float(u(0.6, 1.0)),
        }
    if name == "posterise":
        return {"levels": [int(v) for v in rng.integers(2, 6, size=3)]}
    if name == "palette":
        return {
            "palette": [_colour(rng) for _ in range(int(rng.integers(3, 9)))],
            "dither": bool(rng.random() < 0.5),
        }
    if name == "halftone":
        return {
            "cell": float(u(3.0, 8.0)),
            "angle": float(u(0, 90)),
            "mode": str(rng.choice(["mono", "cmy"])),
            "ink": _colour(rng, 0.0, 0.4),
            "paper": _colour(rng, 0.75, 1.0),
        }
    if name == "dither":
        return {
            "levels": int(rng.integers(2, 5)),
            "matrix": int(rng.choice([2, 4, 8])),
            "mono": bool(rng.random() < 0.5),
            "dark": _colour(rng, 0.0, 0.4),
            "light": _colour(rng, 0.6, 1.0),
        }
    if name == "painterly":
        return {
            "median": int(rng.choice([3, 5, 7])),
            "blur": float(u(0.3, 2.0)),
            "edge_dark": float(u(0.0, 0.9)),
            "saturation": float(u(0.7, 1.8)),
        }
    if name == "pixel":
        return {"factor": int(rng.integers(3, 9)), "colors": int(rng.integers(4, 17))}
    if name == "sketch":
        return {
            "blur": float(u(1.5, 6.0)),
            "darkness": float(u(1.0, 4.0)),
            "ink": _colour(rng, 0.0, 0.5),
            "paper": _colour(rng, 0.7, 1.0),
            "colour": float(u(0.0, 0.6)),
        }
    if name == "cel":
        return {
            "median": int(rng.choice([3, 5])),
            "bands": int(rng.integers(2, 5)),
            "floor": float(u(0.2, 0.6)),
            "saturation": float(u(0.9, 1.8)),
        }
    if name == "watercolour":
        return {
            "blur": float(u(1.0, 3.0)),
            "levels": int(rng.integers(4, 9)),
            "edge_dark": float(u(0.1, 0.6)),
            "wash": float(u(0.4, 0.9)),
        }
    if name == "outline":
        return {
            "percentile": float(u(78, 94)),
            "thickness": int(rng.integers(1, 4)),
            "opacity": float(u(0.6, 1.0)),
            "ink": _colour(rng, 0.0, 0.35),
        }
    if name == "texture":
        return {
            "kind": str(rng.choice(["grain", "paper", "canvas", "scanline", "hatch"])),
            "scale": float(u(3.0, 9.0)),
            "strength": float(u(0.15, 0.5)),
            "blend": str(rng.choice(["multiply", "overlay"])),
            "tint": _colour(rng, 0.5, 1.0),
        }
    if name == "vignette":
        return {"strength": float(u(0.3, 0.9)), "colour": _colour(rng, 0.0, 0.6)}
    if name == "chroma":
        return {"shift": int(rng.integers(1, 4))}
    if name in _SAMPLERS:
        return _SAMPLERS[name](name, rng)
    raise ValueError(f"unknown style op {name!r}")


Operation = Callable[[Array, Params, np.random.Generator], Array]
_SAMPLERS: dict[str, Callable[[str, np.random.Generator], Params]] = {}


def register_primary(
    name: str, operation: Operation, sampler: Callable[[str, np.random.Generator], Params]
) -> None:
    """Add a primary family kept out of PRIMARIES (held_out_ops.py registers its own)."""
    OPS[name] = operation
    _SAMPLERS[name] = sampler


def sample_style(rng: np.random.Generator, primaries: Sequence[str] = PRIMARIES) -> StyleSpec:
    """A random style: grade, one primary look of `primaries`, optional outline/texture/vignette/chroma."""
    primary = str(rng.choice(primaries))
    ops: list[tuple[str, Params]] = [
        ("grade", _sample_params("grade", rng)),
        (primary, _sample_params(primary, rng)),
    ]
    for extra, probability in (("outline", 0.35), ("texture", 0.45), ("vignette", 0.25), ("chroma", 0.1)):
        if rng.random() < probability and not (extra == "outline" and primary == "sketch"):
            ops.append((extra, _sample_params(extra, rng)))
    return StyleSpec(primary, ops)


def _nudge(value: Any, rng: np.random.Generator, amount: float) -> Any:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        floor = min(value, 2)  # counts such as levels and bands stay >= 2
        return max(floor, value + int(rng.integers(-1, 2))) if rng.random() < amount else value
    if isinstance(value, float):
        return value * (1 + rng.uniform(-amount, amount))
    if isinstance(value, list) and value and isinstance(value[0], float):  # a colour
        return [float(np.clip(v + rng.uniform(-amount / 2, amount / 2), 0, 1)) for v in value]
    if isinstance(value, list):
        return [_nudge(v, rng, amount) for v in value]
    return value


def lookalike(spec: StyleSpec, of_index: int, rng: np.random.Generator, amount: float = 0.2) -> StyleSpec:
    """A near copy: every parameter nudged by up to `amount`, one non-grade op resampled or toggled."""
    ops = [
        (name, {k: _nudge(v, rng, amount) for k, v in params.items()})
        for name, params in copy.deepcopy(spec.ops)
    ]
    extras = [i for i, (name, _) in enumerate(ops) if name in ("outline", "texture", "vignette")]
    if extras and rng.random() < 0.5:
        index = int(rng.choice(extras))
        ops[index] = (ops[index][0], _sample_params(ops[index][0], rng))
    else:
        candidates = [n for n in ("outline", "texture", "vignette") if n not in {name for name, _ in ops}]
        if candidates and spec.primary != "sketch":
            name = str(rng.choice(candidates))
            ops.append((name, _sample_params(name, rng)))
        elif extras:
            ops.pop(int(rng.choice(extras)))
    return StyleSpec(spec.primary, ops, lookalike_of=of_index)


def apply_style(spec: StyleSpec, image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Restyle one image; `rng` drives the per-image jitter and texture phase."""
    x = _from_pil(image)
    for name, params in spec.ops:
        x = OPS[name](x, params, rng)
    return _to_pil(x)
