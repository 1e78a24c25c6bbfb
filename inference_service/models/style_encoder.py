"""Triplet style encoder: image -> 128-d L2-normalised style embedding (docs/design.md 5).

Default "stats" network: style lives in channel statistics far more than in spatial layout,
which lets the encoder ignore the subject. The "vgg19" backbone is the paper's setting (ImageNet
weights only from a local .safetensors file, never a pickle).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save, save_file
from torch import nn
from torch.nn import functional

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "style_encoder.safetensors"
UNTRAINED_SEED = 0
BACKBONES = ("stats", "vgg19")
VGG19_BLOCK_ENDS = (3, 8, 17, 26, 35)  # the ReLU before each max-pool
VGG19_WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    dim: int = 128
    input_size: int = 128
    backbone: str = "stats"
    stem_width: int = 0  # full-resolution 3x3 conv before the strided stages; 0: none
    hist_bins: int = 16  # soft colour-histogram bins per RGB channel of the input; 0: none
    joint_bins: int = 8  # joint RGB histogram (joint_bins^3 cells, square-rooted) of the input; 0: none
    hidden: int = 512

    @classmethod
    def from_json(cls, text: str) -> EncoderConfig:
        raw: dict[str, Any] = json.loads(text)
        # Keys missing from older files mean "off": such files rebuild their original network.
        return cls(
            widths=tuple(raw["widths"]),
            dim=int(raw["dim"]),
            input_size=int(raw["input_size"]),
            backbone=str(raw.get("backbone", "stats")),
            stem_width=int(raw.get("stem_width", 0)),
            hist_bins=int(raw.get("hist_bins", 0)),
            joint_bins=int(raw.get("joint_bins", 0)),
            hidden=int(raw.get("hidden", 256)),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def vgg19(cls, dim: int = 128, input_size: int = 224) -> EncoderConfig:
        """The paper's backbone (VGG19 features, 128-d output)."""
        return cls(
            widths=VGG19_WIDTHS,
            dim=dim,
            input_size=input_size,
            backbone="vgg19",
            stem_width=0,
            hist_bins=0,
            joint_bins=0,
            hidden=512,
        )


def _mean_std(x: torch.Tensor) -> torch.Tensor:
    """Per-channel spatial mean and standard deviation. Two passes (mean, then the mean squared
    deviation) rather than `var`: the same figures; with the channels-last stages (below), the
    forward is ~1.5x and a training step ~1.25x faster on 2 CPU cores than `var` in NCHW
    (`findlora bench throughput`, "encoder_forward_variants", times all three)."""
    flat = x.flatten(2)
    mean = flat.mean(dim=2)
    deviation = flat - mean.unsqueeze(2)
    # eps inside the root: a channel that is constant (all ReLUs off) must not give NaN gradients
    std = ((deviation * deviation).mean(dim=2) + 1e-6).sqrt()
    return torch.cat([mean, std], dim=1)


def _soft_histogram(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Per-channel histogram of values in 0..1 with triangular bins centred at (k + 0.5) / bins.

    A value splits its unit weight linearly between the two nearest centres (what the triangular
    kernel gives), accumulated with scatter_add: linear in the pixels, no (pixels x bins) tensor.
    """
    flat = x.clamp(0.0, 1.0).flatten(2)
    position = flat * bins - 0.5
    lower = position.floor()
    upper_weight = position - lower
    lower_index = lower.long()
    histogram = torch.zeros(*flat.shape[:2], bins + 2, device=x.device, dtype=x.dtype)
    # Shift by one so the half-bins below the first and above the last centre land in spare slots.
    histogram.scatter_add_(2, lower_index + 1, 1.0 - upper_weight)
    histogram.scatter_add_(2, lower_index + 2, upper_weight)
    return (histogram[:, :, 1:-1] / flat.shape[2]).flatten(1)


def _joint_histogram(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Joint RGB histogram (bins^3 cells) of the input, square-rooted: L2 between two of them is the
    Hellinger distance of the colour distributions. Input-only, so it needs no gradient."""
    cells = (x.detach().clamp(0.0, 1.0) * bins).long().clamp(max=bins - 1)
    index = ((cells[:, 0] * bins + cells[:, 1]) * bins + cells[:, 2]).flatten(1)
    histogram = torch.zeros(x.shape[0], bins**3, device=x.device, dtype=x.dtype)
    histogram.scatter_add_(1, index, torch.ones_like(index, dtype=x.dtype))
    return (histogram / index.shape[1]).sqrt()


class StyleEncoder(nn.Module):
    pixel_mean: torch.Tensor  # buffers of the vgg19 backbone (ImageNet normalisation)
    pixel_std: torch.Tensor

    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        if config.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {config.backbone!r}; expected one of {', '.join(BACKBONES)}")
        self.config = config
        self.channels_last = True  # the layout the stages run in (False: contiguous NCHW, for the bench)
        self.stem: nn.Module | None = None
        stages: list[nn.Module] = []
        if config.backbone == "vgg19":
            from torchvision.models import vgg19

            features = vgg19(weights=None).features
            start = 0
            for end in VGG19_BLOCK_ENDS:
                stages.append(nn.Sequential(*features[start : end + 1]))
                start = end + 1  # the max-pool opens the next block
            widths: tuple[int, ...] = VGG19_WIDTHS
            self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
            pooled = 2 * (3 + sum(widths))
        else:
            channels = 3
            pooled = 2 * 3
            if config.stem_width:
                self.stem = nn.Sequential(
                    nn.Conv2d(3, config.stem_width, 3, padding=1), nn.ReLU(inplace=True)
                )
                channels = config.stem_width
                pooled += 2 * config.stem_width
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
            pooled += 2 * sum(config.widths)
        pooled += 3 * config.hist_bins + config.joint_bins**3
        self.pooled_dim = pooled
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(
            nn.Linear(pooled, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, config.dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) RGB in 0..1 -> (N, dim) unit vectors."""
        return self.project(self.pooled(x))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head: pooled statistics -> unit embedding."""
        return functional.normalize(self.head(pooled), dim=1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Colour statistics and per-stage mean/std, concatenated (the head's input)."""
        pooled = [_mean_std(x)]
        if self.config.hist_bins:
            pooled.append(_soft_histogram(x, self.config.hist_bins))
        if self.config.joint_bins:
            pooled.append(_joint_histogram(x, self.config.joint_bins))
        # Channels-last: oneDNN's convolutions run without layout conversions, and the two-pass
        # statistics reduce over each channel's pixels at a fixed stride; the same embeddings to 1e-6.
        h = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        if self.config.backbone == "vgg19":
            h = (h - self.pixel_mean) / self.pixel_std
        if self.stem is not None:
            h = self.stem(h)
            pooled.append(_mean_std(h))
        for stage in self.stages:
            h = stage(h)
            pooled.append(_mean_std(h))
        return torch.cat(pooled, dim=1)

    def load_backbone_weights(self, path: Path) -> None:
        """Pretrained VGG19 features (torchvision key names, `features.<i>.weight`) from .safetensors."""
        if self.config.backbone != "vgg19":
            raise ValueError("backbone weights apply to the vgg19 backbone only")
        state = load_file(str(path), device="cpu")
        stage_of: dict[int, tuple[int, int]] = {}
        start = 0
        for stage_index, end in enumerate(VGG19_BLOCK_ENDS):
            for layer in range(start, end + 1):
                stage_of[layer] = (stage_index, layer - start)
            start = end + 1
        mapped = {}
        for key, value in state.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "features" and int(parts[1]) in stage_of:
                stage_index, local = stage_of[int(parts[1])]
                mapped[f"stages.{stage_index}.{local}.{parts[2]}"] = value
        if not mapped:
            raise ValueError(f"{path}: no VGG19 `features.<i>.<param>` tensors found")
        missing = [k for k in self.state_dict() if k.startswith("stages.") and k not in mapped]
        if missing:
            raise ValueError(f"{path}: missing VGG19 tensors, e.g. {missing[:3]}")
        self.load_state_dict(mapped, strict=False)


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


def encoder_bytes(model: StyleEncoder, metadata: dict[str, str] | None = None) -> bytes:
    """The .safetensors file save_encoder writes, as bytes (for the blob store)."""
    meta = {"config": model.config.to_json(), **(metadata or {})}
    return save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, metadata=meta)


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
