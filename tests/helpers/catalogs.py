"""Small procedural catalogs for tests: distinct colour/tone styles over random content."""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from inference_service.catalog.format import LoraEntry, dump_toml, lora_toml


def content_image(rng: np.random.Generator, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size - 10, 2))
        x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def apply_style(image: Image.Image, style: int) -> Image.Image:
    """Style `style`: a strong hue tint (from a colour wheel), a posterisation depth and a blur,
    on a grid so that any two styles differ clearly even to an untrained encoder."""
    hue = (style * 0.38197) % 1.0  # golden-ratio steps spread the tints around the wheel
    tint = np.array(colorsys.hsv_to_rgb(hue, 0.9, 1.0)) * 255
    pixels = np.asarray(image, dtype=np.float64)
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = 0.35 * grey + 0.65 * tint * (grey / 255)
    levels = 2 + style % 4
    pixels = np.round(pixels / 255 * (levels - 1)) / (levels - 1) * 255
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(float((style // 4) % 3)))


def write_catalog(
    root: Path,
    n_loras: int = 20,
    n_samples: int = 10,
    seed: int = 0,
    unchanged_sample: tuple[str, str] | None = None,
    shared_style: int | None = None,
) -> Path:
    """A catalog directory in the docs/design.md 6 format. `unchanged_sample=(slug, sample_id)` makes
    that reference a copy of its sample, which cleansing must drop; `shared_style` gives every
    LoRA that one style (LoRAs no encoder can tell apart)."""
    rng = np.random.default_rng(seed)
    (root / "samples").mkdir(parents=True)
    (root / "catalog.toml").write_text(dump_toml({"name": "test", "base_model": "sd1"}))
    samples = {}
    for i in range(n_samples):
        sample_id = f"s{i:02d}"
        samples[sample_id] = content_image(rng)
        samples[sample_id].save(root / "samples" / f"{sample_id}.png")
    for style in range(n_loras):
        slug = f"style-{style:02d}"
        ref_dir = root / "loras" / slug / "references"
        ref_dir.mkdir(parents=True)
        entry = LoraEntry(
            slug=slug,
            name=f"Style {style}",
            url=f"https://example.org/{slug}",
            trigger_words=[f"trig{style}"],
        )
        (root / "loras" / slug / "lora.toml").write_text(lora_toml(entry))
        for sample_id, image in samples.items():
            look = style if shared_style is None else shared_style
            styled = image if unchanged_sample == (slug, sample_id) else apply_style(image, look)
            styled.save(ref_dir / f"{sample_id}.png")
    return root


def unreadable(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Reading these files fails as it does for a file of mode 000 (which root, running the
    tests in a container, could still read)."""
    denied = {str(p) for p in paths}

    def guard(original: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: Path, *args: object, **kwargs: object) -> Any:
            if str(self) in denied:
                raise PermissionError(13, "Permission denied", str(self))
            return original(self, *args, **kwargs)

        return read

    monkeypatch.setattr(Path, "read_bytes", guard(Path.read_bytes))
    monkeypatch.setattr(Path, "open", guard(Path.open))
