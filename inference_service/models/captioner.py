"""The image interrogator of GMI: a BLIP captioner that turns a query image into a pseudo-prompt.

Loaded through transformers `from_pretrained` (a model id, or a local directory when offline);
greedy or beam search, a token cap; half precision on CUDA; batched. transformers is imported in
the constructor only (seconds to import; the CLI and the bots never do).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image


class BlipCaptioner:
    def __init__(
        self,
        source: str,
        *,
        device: str = "cpu",
        num_beams: int = 1,
        max_new_tokens: int = 30,
        batch_size: int = 8,
    ) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self.processor: Any = BlipProcessor.from_pretrained(source)
        loader: Any = BlipForConditionalGeneration.from_pretrained
        self.model: Any = loader(source, dtype=dtype).to(device).eval()
        self.device = device
        self.dtype = dtype
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.label = f"blip:{source}"
        self._lock = threading.Lock()

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        captions: list[str] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = [image.convert("RGB") for image in images[start : start + self.batch_size]]
                inputs = self.processor(images=chunk, return_tensors="pt").to(self.device)
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
                ids = self.model.generate(
                    **inputs, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens, do_sample=False
                )
                texts = self.processor.batch_decode(ids, skip_special_tokens=True)
                captions.extend(" ".join(text.split()) for text in texts)
        return captions
