"""Line drawings of the samples, the ControlNet condition of a transfer (docs/design.md 5).

HED when weights are configured (a local .safetensors: operators convert the published .pth once, so
no pickle is ever loaded here), otherwise a classical detector: the "lineart standard" difference of
a Gaussian blur and the image, which needs no weights. Both give white lines on black.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageFilter


class LineDetector(Protocol):
    label: str

    def __call__(self, image: Image.Image, size: int) -> Image.Image:
        """RGB line drawing of `image` at size x size."""
        ...


class ClassicalLines:
    label = "classical"

    def __init__(self, sigma: float = 6.0) -> None:
        self.sigma = sigma

    def __call__(self, image: Image.Image, size: int) -> Image.Image:
        rgb = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        x = np.asarray(rgb, dtype=np.float32)
        blurred = np.asarray(rgb.filter(ImageFilter.GaussianBlur(self.sigma * size / 512)), dtype=np.float32)
        # Dark strokes are where the image is darker than its neighbourhood in every channel.
        intensity = np.clip(np.min(blurred - x, axis=2), 0, 255)
        strong = intensity[intensity > 8]
        scale = max(16.0, float(np.median(strong))) if strong.size else 16.0
        lines = np.clip(intensity / scale * 127, 0, 255).astype(np.uint8)
        return Image.fromarray(lines).convert("RGB")


class HedLines:
    label = "hed"

    def __init__(self, weights: Path, device: str = "cpu") -> None:
        from controlnet_aux.hed import ControlNetHED_Apache2, HEDdetector
        from safetensors.torch import load_file

        network: Any = ControlNetHED_Apache2()
        network.load_state_dict(load_file(str(weights)))
        network.float().eval().to(device)
        self.detector = HEDdetector(network)
        self.device = device

    def __call__(self, image: Image.Image, size: int) -> Image.Image:
        result = self.detector(image.convert("RGB"), detect_resolution=size, image_resolution=size)
        drawing: Image.Image = result.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        return drawing


def line_detector(hed_weights: Path | None, device: str = "cpu") -> LineDetector:
    return HedLines(hed_weights, device) if hed_weights is not None else ClassicalLines()
