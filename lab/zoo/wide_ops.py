"""Wider training families: primary looks only the `train-wide` split draws.

An encoder generalises to a style family it never saw the better the more kinds of style it
trained on (v6: 10 families). These six widen that set for training; none is drawn by the eval or
demo splits, so the procedural eval row still measures the ten families it always measured, and
each was chosen unlike the held-out families (held_out_ops.py: stipple, stained glass, woodcut,
emboss, Kuwahara, risograph) so that the held-out row stays a row of new kinds of style:

- glitch: channels out of register, bands of rows torn sideways, coarse digital levels;
- neon: the picture's edges as glowing tubes over a dark ground;
- film: lifted blacks, a colour fade, bloom around highlights, heavy grain and a light leak;
- text mode: the picture redrawn as characters of a density ramp, one per cell;
- solarise: tone curves folded back on themselves, per channel;
- cross stitch: cells of stitched crosses in a few thread colours over visible fabric.

Same conventions as style_ops: float32 (H, W, 3) images in 0..1, numpy/PIL, a few ms at 160 px.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from lab.zoo.style_ops import (
    Array,
    Params,
    _colour,
    _edges,
    _f32,
    _from_pil,
    _luma,
    _smooth_noise,
    _to_pil,
    _unit,
    register_primary,
)

WIDE_PRIMARIES = ("glitch", "neon", "film", "text_mode", "solarise", "cross_stitch")
# Characters from sparse to dense: a cell's darkness picks one.
DENSITY_RAMP = " .:-=+*#%@"


def op_glitch(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h = img.shape[0]
    shift = max(1, int(p["channel_shift"]))
    out = img.copy()
    out[..., 0] = np.roll(img[..., 0], shift, axis=1)
    out[..., 2] = np.roll(img[..., 2], -shift, axis=1)
    for _ in range(max(1, int(p["bands"]))):  # torn bands: where they fall differs per image
        top = int(rng.integers(0, h))
        height = int(rng.integers(1, max(2, int(p["band_height"])) + 1))
        tear = int(rng.integers(-p["tear"], p["tear"] + 1))
        out[top : top + height] = np.roll(out[top : top + height], tear, axis=1)
    levels = max(2, int(p["levels"]))
    out = _f32(np.round(out * (levels - 1)) / (levels - 1))
    rows = (np.arange(h) % 2 == 0).astype(np.float32)[:, None, None]
    return _f32(np.clip(out * (1 - _unit(p["scanlines"]) * rows), 0, 1))


def op_neon(img: Array, p: Params, rng: np.random.Generator) -> Array:
    edges = _edges(_luma(_from_pil(_to_pil(img).filter(ImageFilter.GaussianBlur(p["soften"])))))
    edges = np.clip(edges / (np.percentile(edges, 97) + 1e-6), 0, 1)
    if p["own_colours"]:  # tubes in the picture's own hues, pushed to full saturation
        low, peak = img.min(axis=2, keepdims=True), img.max(axis=2, keepdims=True)
        tube = np.clip((img - low) / np.maximum(peak - low, 0.05), 0, 1)
        tube = 0.3 + 0.7 * tube
    else:
        tube = np.broadcast_to(np.array(p["tube"], np.float32), img.shape)
    line = _f32(edges[..., None] * tube)
    glow = _from_pil(_to_pil(line).filter(ImageFilter.GaussianBlur(p["glow_radius"])))
    ground = np.array(p["ground"], np.float32) + _unit(p["ghost"]) * img * 0.4
    return _f32(np.clip(ground + line * 1.2 + glow * p["glow"], 0, 1))


def op_film(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    lift = _unit(p["lift"])
    x = lift + (1 - lift - 0.05) * img
    fade = np.array(p["fade"], np.float32)
    x = x * (1 - _unit(p["fade_amount"])) + fade * _unit(p["fade_amount"])
    bright = np.clip((_luma(x) - 0.7) / 0.3, 0, 1)[..., None] * x
    x = x + _from_pil(_to_pil(_f32(bright)).filter(ImageFilter.GaussianBlur(p["bloom_radius"]))) * p["bloom"]
    grain = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    if p["grain_size"] > 1.2:  # clumped grain of a faster stock
        grain = _f32(ndimage.gaussian_filter(grain, p["grain_size"] / 2))
        grain /= grain.std() + 1e-6
    x = x + p["grain"] * grain[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(p["leak_angle"])
    along = (xx / w - 0.5) * math.cos(a) + (yy / h - 0.5) * math.sin(a)
    leak = np.clip(along * 2, 0, 1) ** 2
    x = x + leak[..., None] * np.array(p["leak"], np.float32) * _unit(p["leak_amount"])
    return _f32(np.clip(x, 0, 1))


@lru_cache(maxsize=16)
def _glyphs(cell: int) -> np.ndarray:
    """(len(DENSITY_RAMP), cell, cell) ink masks of the ramp's characters, drawn once per size.
    Pillow's built-in font draws them, so a zoo rebuilt under another Pillow may differ here."""
    font = ImageFont.load_default()
    masks = []
    for char in DENSITY_RAMP:
        canvas = Image.new("L", (12, 12), 0)
        ImageDraw.Draw(canvas).text((3, 0), char, fill=255, font=font)
        masks.append(np.asarray(canvas.resize((cell, cell), Image.Resampling.BOX), np.float32) / 255.0)
    return np.clip(np.stack(masks) * 3.0, 0, 1)  # thin strokes averaged into a small cell: restore ink


def op_text_mode(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    cell = int(min(max(p["cell"], 4), 12))
    rows, cols = math.ceil(h / cell), math.ceil(w / cell)
    small = _from_pil(_to_pil(img).resize((cols, rows), Image.Resampling.BOX))
    # Ink where the picture is dark on a light ground; where it is bright on a dark one.
    darkness = _luma(small) if p["dark_ground"] else 1 - _luma(small)
    index = np.clip((darkness ** p["gamma"]) * len(DENSITY_RAMP), 0, len(DENSITY_RAMP) - 1).astype(int)
    ink = _glyphs(cell)[index]  # (rows, cols, cell, cell)
    mask = ink.transpose(0, 2, 1, 3).reshape(rows * cell, cols * cell)[:h, :w, None]
    ground = np.array(p["ground"], np.float32)
    if p["coloured"]:
        colour = np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:h, :w]
        colour = np.clip(colour * 1.3, 0, 1)
    else:
        colour = np.broadcast_to(np.array(p["ink"], np.float32), img.shape)
    return _f32(ground * (1 - mask) + colour * mask)


def op_solarise(img: Array, p: Params, rng: np.random.Generator) -> Array:
    out = np.empty_like(img)
    for c in range(3):
        v = img[..., c]
        if p["mode"] == "fold":  # values past the threshold mirror back down
            t = min(max(p["thresholds"][c], 0.2), 0.9)
            out[..., c] = np.where(v > t, t - (v - t) * t / max(1 - t, 1e-3), v) / t
        else:  # a wave: tones cycle through the channel's range `cycles` times
            out[..., c] = 0.5 - 0.5 * np.cos(2 * math.pi * p["cycles"] * v + p["thresholds"][c] * math.pi)
    mix = _unit(p["amount"])
    return _f32(np.clip(img * (1 - mix) + out * mix, 0, 1))


def op_cross_stitch(img: Array, p: Params, rng: np.random.Generator) -> Array:
    h, w = img.shape[:2]
    cell = int(min(max(p["cell"], 4), 10))
    rows, cols = math.ceil(h / cell), math.ceil(w / cell)
    small = _to_pil(img).resize((cols, rows), Image.Resampling.BOX)
    threads = _from_pil(small.quantize(colors=max(2, int(p["threads"])), method=Image.Quantize.MEDIANCUT))
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float32) + 0.5
    width = max(0.6, p["thickness"] * cell / 6)
    diagonal = np.minimum(np.abs(yy - xx), np.abs(yy + xx - cell)) / math.sqrt(2)
    stitch = np.clip(1 - diagonal / width, 0, 1)  # a cross, brightest along its threads' middle
    shade = 0.75 + 0.25 * stitch
    cover = np.tile((stitch > 0).astype(np.float32), (rows, cols))[:h, :w, None]
    light = np.tile(shade, (rows, cols))[:h, :w, None]
    thread = np.repeat(np.repeat(threads, cell, axis=0), cell, axis=1)[:h, :w] * light
    fabric = np.array(p["fabric"], np.float32)
    weave = _smooth_noise(rng, (h, w), 1.5)[..., None] * 0.12
    return _f32(np.clip(fabric * (1 - weave) * (1 - cover) + thread * cover, 0, 1))


OPERATIONS = {
    "glitch": op_glitch,
    "neon": op_neon,
    "film": op_film,
    "text_mode": op_text_mode,
    "solarise": op_solarise,
    "cross_stitch": op_cross_stitch,
}


def sample_params(name: str, rng: np.random.Generator) -> Params:
    u = rng.uniform
    if name == "glitch":
        return {
            "channel_shift": int(rng.integers(1, 7)),
            "bands": int(rng.integers(3, 13)),
            "band_height": int(rng.integers(2, 11)),
            "tear": int(rng.integers(3, 21)),
            "levels": int(rng.integers(4, 33)),
            "scanlines": float(u(0.0, 0.4)),
        }
    if name == "neon":
        return {
            "soften": float(u(0.5, 1.5)),
            "own_colours": bool(rng.random() < 0.5),
            "tube": _colour(rng, 0.2, 1.0),
            "glow_radius": float(u(1.5, 4.0)),
            "glow": float(u(0.6, 1.6)),
            "ground": _colour(rng, 0.0, 0.15),
            "ghost": float(u(0.0, 0.5)),
        }
    if name == "film":
        return {
            "lift": float(u(0.04, 0.22)),
            "fade": _colour(rng, 0.3, 0.9),
            "fade_amount": float(u(0.05, 0.35)),
            "bloom": float(u(0.1, 0.6)),
            "bloom_radius": float(u(2.0, 6.0)),
            "grain": float(u(0.03, 0.1)),
            "grain_size": float(u(0.8, 2.5)),
            "leak": _colour(rng, 0.4, 1.0),
            "leak_angle": float(u(0, 360)),
            "leak_amount": float(u(0.0, 0.5)),
        }
    if name == "text_mode":
        dark = bool(rng.random() < 0.5)
        return {
            "cell": int(rng.integers(5, 10)),
            "gamma": float(u(0.7, 1.4)),
            "dark_ground": dark,
            "coloured": bool(rng.random() < 0.5),
            "ink": _colour(rng, 0.6, 1.0) if dark else _colour(rng, 0.0, 0.4),
            "ground": _colour(rng, 0.0, 0.2) if dark else _colour(rng, 0.8, 1.0),
        }
    if name == "solarise":
        return {
            "mode": str(rng.choice(["fold", "wave"])),
            "thresholds": [float(v) for v in rng.uniform(0.3, 0.8, size=3)],
            "cycles": float(u(0.8, 2.2)),
            "amount": float(u(0.6, 1.0)),
        }
    if name == "cross_stitch":
        return {
            "cell": int(rng.integers(4, 9)),
            "threads": int(rng.integers(5, 17)),
            "thickness": float(u(0.8, 1.6)),
            "fabric": _colour(rng, 0.75, 1.0),
        }
    raise ValueError(f"unknown wide style op {name!r}")


for _name, _op in OPERATIONS.items():
    register_primary(_name, _op, sample_params)
