"""Held-out style families: primary looks that no encoder trains on.

Every encoder so far trained on all of style_ops.PRIMARIES, so a benchmark row that asks "does the
encoder generalise to a new kind of style?" needs families it never saw. These are those:
stippling, stained glass, woodcut, emboss (relief), Kuwahara oil paint and risograph print, each
a look image generators are asked for, each unlike the trained families and unlike each other.
The train and eval splits never draw them; the zoo's `heldout-family` split draws only them (with
the usual grade, extras and lookalikes), see style_zoo.py.

Same conventions as style_ops: float32 (H, W, 3) images in 0..1, vectorised numpy/scipy/PIL,
a few ms at 160 px.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageFilter
from scipy import ndimage

from lab.zoo.style_ops import (
    Array,
    Params,
    _colour,
    _f32,
    _from_pil,
    _luma,
    _smooth_noise,
    _to_pil,
    _unit,
    register_primary,
)

HELD_OUT_PRIMARIES = ("stipple", "stained_glass", "woodcut", "emboss", "kuwahara", "risograph")


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(xx * xx + yy * yy <= radius * radius + radius // 2)


def op_stipple(img: Array, p: Params, rng: np.random.Generator) -> Array:
    """Dots on paper: ink dots whose density follows darkness (stippling), or dots that carry the
    image's own colour (pointillism)."""
    h, w = img.shape[:2]
    radius = max(1, int(p["radius"]))
    footprint = _disk(radius)
    # dots per pixel such that full darkness is about covered: density x (dot area)^-1
    count = int(h * w * p["density"] / footprint.sum())
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    paper = np.array(p["paper"], np.float32)
    if p["coloured"]:
        keep = rng.random(count) < _unit(p["coverage"])
        saturated = img[ys, xs]
        mean = saturated.mean(axis=1, keepdims=True)
        colours = np.clip(mean + (saturated - mean) * p["saturation"], 0, 1)
    else:
        luma = _luma(img)
        low, high = np.percentile(luma, [2, 98])
        darkness = np.clip((high - luma[ys, xs]) / max(float(high - low), 0.05), 0, 1)  # stretched
        keep = rng.random(count) < darkness ** p["gamma"]
        colours = np.broadcast_to(np.array(p["ink"], np.float32), (count, 3))
    kept = np.flatnonzero(keep)
    ids = np.zeros((h, w), np.int64)
    order = rng.permutation(len(kept)) + 1  # which dot lies on top where two overlap: random
    ids[ys[kept], xs[kept]] = order
    ids = ndimage.maximum_filter(ids, footprint=footprint)
    lookup = np.empty((len(kept) + 1, 3), np.float32)
    lookup[0] = paper
    lookup[order] = colours[kept]
    return _f32(lookup[ids])


def op_stained_glass(img: Array, p: Params, rng: np.random.Generator) -> Array:
    """Voronoi panes of saturated flat colour held by dark lead lines, lit unevenly."""
    h, w = img.shape[:2]
    cell = max(3.0, p["cell"])
    rows, cols = math.ceil(h / cell), math.ceil(w / cell)
    # one seed jittered inside each grid cell: a pixel's nearest seed is in its 3 x 3 neighbourhood
    grid_y, grid_x = np.mgrid[0:rows, 0:cols]
    seeds = (np.stack([grid_y, grid_x], axis=2) + rng.uniform(0, 1, (rows, cols, 2))) * cell
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = yy // cell, xx // cell
    best = np.full((h, w), np.inf)
    label = np.zeros((h, w), np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ny, nx = (
                np.clip(cy + dy, 0, rows - 1).astype(np.int64),
                np.clip(cx + dx, 0, cols - 1).astype(np.int64),
            )
            seed = seeds[ny, nx]
            distance = (seed[..., 0] - yy) ** 2 + (seed[..., 1] - xx) ** 2
            closer = distance < best
            best = np.where(closer, distance, best)
            label = np.where(closer, ny * cols + nx, label)
    counts = np.bincount(label.ravel(), minlength=rows * cols).clip(min=1)
    means = (
        np.stack(
            [
                np.bincount(label.ravel(), weights=img[..., c].ravel(), minlength=rows * cols)
                for c in range(3)
            ],
            axis=1,
        )
        / counts[:, None]
    )
    grey = means.mean(axis=1, keepdims=True)
    panes = np.clip(grey + (means - grey) * p["saturation"], 0, 1)[label]
    glow = 1 - p["glow"] * _smooth_noise(rng, (h, w), cell * 1.5)[..., None]
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    if p["lead"] > 1:
        edge = ndimage.binary_dilation(edge, iterations=int(p["lead"]) - 1)
    lead = np.array(p["lead_colour"], np.float32)
    return _f32(np.where(edge[..., None], lead, panes * glow))


def op_woodcut(img: Array, p: Params, rng: np.random.Generator) -> Array:
    """A carved block print: bold ink masses, parallel gouged lines whose width follows the tone,
    wobbling as a hand-cut line does; one ink on a paper colour."""
    h, w = img.shape[:2]
    luma = _from_pil(_to_pil(img).filter(ImageFilter.GaussianBlur(p["blur"])))
    tone = _luma(luma)
    tone = np.clip((tone - tone.mean()) * p["contrast"] + 0.5, 0, 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = math.radians(p["angle"])
    warp = (_smooth_noise(rng, (h, w), p["period"] * 3) - 0.5) * p["wobble"] * p["period"]
    along = xx * math.cos(angle) + yy * math.sin(angle) + warp
    stripes = 0.5 + 0.5 * np.cos(2 * math.pi * along / p["period"])
    ink_mask = stripes > tone  # dark tone: wide ink lines; light tone: thin ones
    ink_mask |= tone < _unit(p["solid"])  # solid black masses
    ink_mask &= tone < 0.97  # the brightest parts are cut away entirely
    ink, paper = np.array(p["ink"], np.float32), np.array(p["paper"], np.float32)
    return _f32(np.where(ink_mask[..., None], ink, paper))


def op_emboss(img: Array, p: Params, rng: np.random.Generator) -> Array:
    """Relief: the picture pressed into a material (metal, stone, paper), lit from one side."""
    height = ndimage.gaussian_filter(_luma(img), p["blur"])
    gy, gx = np.gradient(height)
    angle = math.radians(p["light"])
    shade = 0.5 + p["depth"] * (gx * math.cos(angle) + gy * math.sin(angle))
    material = np.array(p["material"], np.float32)
    relief = np.clip(material * (0.35 + 1.3 * np.clip(shade, 0, 1))[..., None], 0, 1)
    tint = _unit(p["tint"])
    return _f32(np.clip(relief * (1 - tint) + relief * img * 1.6 * tint, 0, 1))


def op_kuwahara(img: Array, p: Params, rng: np.random.Generator) -> Array:
    """Kuwahara filter: each pixel takes the mean of its least varied quadrant, giving flat oil
    strokes with crisp edges; then the paint's saturation."""
    r = int(p["radius"])
    size = r + 1
    mean = ndimage.uniform_filter(img, size=(size, size, 1), mode="reflect")
    square = ndimage.uniform_filter(img * img, size=(size, size, 1), mode="reflect")
    variance = (square - mean * mean).sum(axis=2)
    half = r // 2 + 1 if r > 1 else 1
    best_var = np.full(img.shape[:2], np.inf, np.float32)
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    padded_var = np.pad(variance, half, mode="edge")
    padded_mean = np.pad(mean, ((half, half), (half, half), (0, 0)), mode="edge")
    for dy in (-half, half):
        for dx in (-half, half):
            window = (slice(half + dy, half + dy + h), slice(half + dx, half + dx + w))
            shifted_var = padded_var[window]
            better = shifted_var < best_var
            best_var = np.where(better, shifted_var, best_var)
            out = np.where(better[..., None], padded_mean[window], out)
    grey = _luma(out)[..., None]
    return _f32(np.clip(grey + (out - grey) * p["saturation"], 0, 1))


def op_risograph(img: Array, p: Params, rng: np.random.Generator) -> Array:
    """A risograph print: two or three fluorescent spot inks, each a grainy stencil of how much of
    that ink the picture needs, printed slightly out of register on off-white paper."""
    h, w = img.shape[:2]
    inks = np.array(p["inks"], np.float32)
    paper = np.array(p["paper"], np.float32)
    # Separation: ink layers multiply, so in optical density (-log) the picture is a sum of the
    # inks' densities weighted by their coverage: bounded least squares per pixel (projected
    # gradient, a few steps: close enough for a print, and stable when two inks are alike).
    ink_density = -np.log(np.clip(inks, 0.05, 1.0))  # (K, 3)
    target = -np.log(np.clip(img / np.maximum(paper, 1e-3), 0.03, 1.0))  # (H, W, 3)
    step = 1.0 / float(np.linalg.eigvalsh(ink_density @ ink_density.T).max())
    coverage = np.zeros((h, w, len(inks)), np.float32)
    for _ in range(12):
        residual = coverage @ ink_density - target
        coverage = np.clip(coverage - step * residual @ ink_density.T, 0, 1)
    coverage = np.clip(coverage * p["density"], 0, 1)
    out = np.broadcast_to(paper, img.shape).copy()
    for k, (ink, offset) in enumerate(zip(inks, p["offsets"], strict=True)):
        grain = ndimage.uniform_filter(rng.random((h, w)).astype(np.float32), 2)  # clumped grain
        grain = (grain - grain.min()) / max(float(np.ptp(grain)), 1e-6)
        layer = (coverage[..., k] > grain).astype(np.float32)
        layer = np.roll(layer, (int(offset[0]), int(offset[1])), axis=(0, 1))  # out of register
        out = out * (1 - layer[..., None] * (1 - ink))
    return _f32(out)


OPERATIONS = {
    "stipple": op_stipple,
    "stained_glass": op_stained_glass,
    "woodcut": op_woodcut,
    "emboss": op_emboss,
    "kuwahara": op_kuwahara,
    "risograph": op_risograph,
}

FLUORESCENT = (
    (1.0, 0.28, 0.62),  # pink
    (0.0, 0.47, 0.75),  # blue
    (1.0, 0.91, 0.0),  # yellow
    (0.0, 0.66, 0.42),  # green
    (1.0, 0.42, 0.2),  # orange
    (0.38, 0.25, 0.65),  # purple
)


def sample_params(name: str, rng: np.random.Generator) -> Params:
    u = rng.uniform
    if name == "stipple":
        return {
            "radius": int(rng.integers(1, 3)),
            "density": float(u(1.5, 3.0)),
            "coloured": bool(rng.random() < 0.5),
            "coverage": float(u(0.5, 0.9)),
            "saturation": float(u(1.0, 1.8)),
            "gamma": float(u(0.7, 1.6)),
            "ink": _colour(rng, 0.0, 0.4),
            "paper": _colour(rng, 0.8, 1.0),
        }
    if name == "stained_glass":
        return {
            "cell": float(u(7.0, 16.0)),
            "saturation": float(u(1.3, 2.2)),
            "glow": float(u(0.1, 0.4)),
            "lead": int(rng.integers(1, 3)),
            "lead_colour": _colour(rng, 0.0, 0.2),
        }
    if name == "woodcut":
        return {
            "blur": float(u(0.5, 2.0)),
            "contrast": float(u(1.2, 2.2)),
            "angle": float(u(0, 180)),
            "period": float(u(3.0, 6.0)),
            "wobble": float(u(0.3, 1.2)),
            "solid": float(u(0.1, 0.3)),
            "ink": _colour(rng, 0.0, 0.35),
            "paper": _colour(rng, 0.75, 1.0),
        }
    if name == "emboss":
        return {
            "blur": float(u(0.8, 2.0)),
            "light": float(u(0, 360)),
            "depth": float(u(6.0, 16.0)),
            "material": _colour(rng, 0.45, 1.0),
            "tint": float(u(0.0, 0.5)),
        }
    if name == "kuwahara":
        return {"radius": int(rng.integers(3, 8)), "saturation": float(u(1.0, 1.7))}
    if name == "risograph":
        count = int(rng.integers(2, 4))
        picks = rng.choice(len(FLUORESCENT), size=count, replace=False)
        return {
            "inks": [list(FLUORESCENT[int(i)]) for i in picks],
            "offsets": [[int(v) for v in rng.integers(-3, 4, size=2)] for _ in range(count)],
            "density": float(u(0.8, 1.3)),
            "paper": _colour(rng, 0.88, 1.0),
        }
    raise ValueError(f"unknown held-out style op {name!r}")


for _name, _op in OPERATIONS.items():
    register_primary(_name, _op, sample_params)
