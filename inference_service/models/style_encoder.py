"""Triplet style encoder: image -> 128-d L2-normalised style embedding.

The network pools per-channel mean and standard deviation of the input and of every
convolutional stage (colour statistics as well as texture at several scales), then projects
them to the embedding. Style lives in such statistics far more than in spatial layout, which
is what lets the encoder ignore the subject of an image.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "style_encoder.safetensors"
UNTRAINED_SEED = 0


@dataclass(frozen=True)
class EncoderConfig:
    widths: tuple[int, ...] = (32, 64, 128, 128)
    dim: int = 128
    input_size: int = 128

    @classmethod
    def from_json(cls, text: str) -> EncoderConfig:
        raw = json.loads(text)
        return cls(widths=tuple(raw["widths"]), dim=int(raw["dim"]), input_size=int(raw["input_size"]))

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _mean_std(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(2)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2, unbiased=False)], dim=1)


class StyleEncoder(nn.Module):
    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        stages: list[nn.Module] = []
        channels = 3
        for width in config.widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, 3, stride=2, padding=1),
                    nn.GroupNorm(1, width, affine=True),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 3, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            channels = width
        self.stages = nn.ModuleList(stages)
        pooled = 2 * (3 + sum(config.widths))
        self.head = nn.Sequential(nn.Linear(pooled, 256), nn.ReLU(inplace=True), nn.Linear(256, config.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) RGB in 0..1 -> (N, dim) unit vectors."""
        pooled = [_mean_std(x)]
        h = x
        for stage in self.stages:
            h = stage(h)
            pooled.append(_mean_std(h))
        return functional.normalize(self.head(torch.cat(pooled, dim=1)), dim=1)


def untrained_encoder(config: EncoderConfig = EncoderConfig()) -> StyleEncoder:
    """The deterministic untrained encoder (the NoFine-Tuning baseline)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = StyleEncoder(config)
    return model.eval()


def save_encoder(model: StyleEncoder, path: Path, metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": model.config.to_json(), **(metadata or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_encoder(path: Path, device: str = "cpu") -> StyleEncoder:
    """Load an encoder saved by save_encoder (safetensors only: no pickle is ever read)."""
    metadata = read_metadata(path)
    if "config" not in metadata:
        raise ValueError(f"{path} is not a findlora style encoder (no config in its metadata)")
    model = StyleEncoder(EncoderConfig.from_json(metadata["config"]))
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device).eval()


def encoder_fingerprint(model: StyleEncoder) -> str:
    """Short hash of the weights: embeddings from encoders with different fingerprints differ."""
    digest = hashlib.sha256(model.config.to_json().encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def resolve_encoder(path: Path | None, device: str = "cpu") -> tuple[StyleEncoder, str]:
    """The configured encoder, else the shipped default, else the untrained one; with a label
    naming it and its weights' fingerprint."""
    if path is not None:
        model, kind = load_encoder(path, device), path.name
    elif DEFAULT_WEIGHTS.exists():
        model, kind = load_encoder(DEFAULT_WEIGHTS, device), "shipped"
    else:
        model, kind = untrained_encoder().to(device), f"untrained-seed{UNTRAINED_SEED}"
    return model, f"{kind}@{encoder_fingerprint(model)}"


def to_tensor(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """Resize (shorter side to `size`, centre crop) RGB PIL images into a (N, 3, size, size) batch."""
    arrays = []
    for image in images:
        rgb = image.convert("RGB")
        scale = size / min(rgb.size)
        resized = rgb.resize(
            (max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))),
            Image.Resampling.BILINEAR,
        )
        left = (resized.width - size) // 2
        top = (resized.height - size) // 2
        cropped = resized.crop((left, top, left + size, top + size))
        arrays.append(np.asarray(cropped, dtype=np.float32) / 255.0)
    batch = np.stack(arrays).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(batch))


class StyleEmbedder:
    """Thread-safe inference wrapper: PIL images in, float32 (N, dim) numpy embeddings out."""

    def __init__(self, model: StyleEncoder, label: str, device: str = "cpu", batch_size: int = 32) -> None:
        self.model = model.to(device).eval()
        self.label = label
        self.device = device
        self.batch_size = batch_size
        self.dim = model.config.dim
        self._lock = threading.Lock()

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        outputs = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = to_tensor(images[start : start + self.batch_size], self.model.config.input_size)
                outputs.append(self.model(chunk.to(self.device)).float().cpu().numpy())
        return np.concatenate(outputs).astype(np.float32)
