"""Image -> vector featurisers compared by the quality benchmark (all return float32 (N, D)).

- the style encoder (trained or untrained);
- a colour histogram (joint RGB, 8 bins a channel, Hellinger embedding: sqrt of the frequencies,
  so that L2 distance is the Hellinger distance);
- Gram-matrix style features (Gatys et al.): channel correlations of the input and of every
  stage of the untrained encoder, each Gram L2-normalised so every layer weighs the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from inference_service.models.style_encoder import StyleEmbedder, StyleEncoder, to_tensor

Vectors = NDArray[np.float32]


class Featurizer(Protocol):
    name: str

    def __call__(self, images: Sequence[Image.Image]) -> Vectors: ...


class EncoderFeaturizer:
    def __init__(self, name: str, model: StyleEncoder, batch_size: int = 64) -> None:
        self.name = name
        self.embedder = StyleEmbedder(model, name, batch_size=batch_size)

    def __call__(self, images: Sequence[Image.Image]) -> Vectors:
        return self.embedder.embed(images)


class ColourHistogram:
    def __init__(self, bins: int = 8, input_size: int = 128) -> None:
        self.name = f"colour histogram ({bins}^3 RGB)"
        self.bins = bins
        self.input_size = input_size

    def __call__(self, images: Sequence[Image.Image]) -> Vectors:
        out = np.zeros((len(images), self.bins**3), dtype=np.float32)
        for row, image in enumerate(images):
            pixels = to_tensor([image], self.input_size)[0].numpy().reshape(3, -1)
            index = np.clip((pixels * self.bins).astype(np.int64), 0, self.bins - 1)
            flat = (index[0] * self.bins + index[1]) * self.bins + index[2]
            counts = np.bincount(flat, minlength=self.bins**3).astype(np.float32)
            out[row] = np.sqrt(counts / counts.sum())
        return out


def _gram(features: torch.Tensor) -> torch.Tensor:
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    gram = flat @ flat.transpose(1, 2) / flat.shape[2]
    rows, cols = torch.triu_indices(c, c)
    upper = gram[:, rows, cols]
    return torch.nn.functional.normalize(upper, dim=1)


class GramFeatures:
    """Gram matrices of the input and of each stage of an (untrained) stats encoder."""

    def __init__(self, model: StyleEncoder, batch_size: int = 64) -> None:
        if model.config.backbone != "stats":
            raise ValueError("Gram features use the stats backbone's stages")
        self.name = "Gram matrices (untrained encoder stages)"
        self.model = model.eval()
        self.batch_size = batch_size

    def __call__(self, images: Sequence[Image.Image]) -> Vectors:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = to_tensor(images[start : start + self.batch_size], self.model.config.input_size)
                grams = [_gram(x)]
                h = x
                if self.model.stem is not None:
                    h = self.model.stem(h)
                    grams.append(_gram(h))
                for stage in self.model.stages:
                    h = stage(h)
                    grams.append(_gram(h))
                outputs.append(torch.cat(grams, dim=1).numpy())
        return np.concatenate(outputs).astype(np.float32)
