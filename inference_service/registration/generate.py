"""Reference transfers t(s, m) and spec images with SD + ControlNet + reference-only + a LoRA
(docs/design.md 5). diffusers is imported here only, lazily, so nothing else pays for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import structlog
import torch
from PIL import Image

from inference_service.config import Settings
from inference_service.registration.families import generator_models
from inference_service.registration.lines import LineDetector, line_detector
from inference_service.registration.reference_only import ReferenceOnly
from inference_service.registration.refusals import LoraFileRejected

log = structlog.get_logger(__name__)
ADAPTER = "registering"


@dataclass(frozen=True)
class GenerationParams:
    base_model: str
    controlnet: str
    size: int = 512
    steps: int = 20
    guidance: float = 1.0
    controlnet_scale: float = 1.0
    lora_scale: float = 1.0
    spec_steps: int = 20
    spec_guidance: float = 7.0
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, family: str) -> GenerationParams:
        base, controlnet = generator_models(settings, family)
        return cls(
            base_model=base,
            controlnet=controlnet,
            size=settings.reference_px,
            steps=settings.reference_steps,
            guidance=settings.reference_guidance,
            controlnet_scale=settings.controlnet_scale,
            lora_scale=settings.lora_scale,
            spec_steps=settings.spec_steps,
            spec_guidance=settings.spec_guidance,
            seed=settings.registration_seed,
        )


def derive_seed(base: int, key: str) -> int:
    """A fixed seed per sample/prompt: the same job, resumed or repeated, draws the same noise."""
    return (base * 1_000_003 + int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)) % 2**63


def center_square(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (
        image.convert("RGB")
        .crop((left, top, left + side, top + side))
        .resize((size, size), Image.Resampling.LANCZOS)
    )


class TransferGenerator:
    def __init__(self, pipe: Any, lines: LineDetector, params: GenerationParams, device: str) -> None:
        from diffusers import AutoPipelineForText2Image

        self.pipe = pipe
        self.text2img = AutoPipelineForText2Image.from_pipe(pipe, controlnet=None)
        self.lines = lines
        self.params = params
        self.device = device
        self.reference_only = ReferenceOnly(pipe.unet, pipe.scheduler)
        for p in (self.pipe, self.text2img):
            p.set_progress_bar_config(disable=True)

    @classmethod
    def load(
        cls, params: GenerationParams, *, hed_weights: Path | None = None, device: str = "cpu"
    ) -> TransferGenerator:
        from diffusers import AutoPipelineForText2Image, ControlNetModel

        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        controlnet = ControlNetModel.from_pretrained(params.controlnet, dtype=dtype)  # type: ignore[no-untyped-call]
        # No safety checker: a blacked-out reference would poison the style set; NSFW LoRAs are
        # flagged in the catalog and filtered at search time instead.
        pipe = AutoPipelineForText2Image.from_pretrained(  # type: ignore[no-untyped-call]
            params.base_model, controlnet=controlnet, dtype=dtype, safety_checker=None
        ).to(device)
        log.info(
            "generator_loaded", base_model=params.base_model, controlnet=params.controlnet, device=device
        )
        return cls(pipe, line_detector(hed_weights, device), params, device)

    @contextmanager
    def lora(self, path: Path) -> Iterator[None]:
        """The LoRA loaded for the duration of the block; the base model is restored afterwards."""
        from safetensors.torch import load_file

        try:
            weights = load_file(str(path))
        except Exception as exc:  # SafetensorError is no ValueError: a header validation let through
            raise LoraFileRejected(f"the LoRA file cannot be read: {_first_line(exc)}") from None
        try:
            self.pipe.load_lora_weights(weights, adapter_name=ADAPTER)
            self.pipe.set_adapters([ADAPTER], adapter_weights=[self.params.lora_scale])
        except (ValueError, RuntimeError, KeyError) as exc:
            self.pipe.unload_lora_weights()
            log.info("lora_does_not_fit", base_model=self.params.base_model, error=_first_line(exc))
            # The checkpoint's name, not its path: a local model directory is the worker's business.
            raise LoraFileRejected(
                f"the LoRA does not fit the configured base model "
                f"{PurePath(self.params.base_model).name}: {_first_line(exc)}"
            ) from None
        try:
            yield
        finally:
            self.pipe.unload_lora_weights()

    def _generator(self, key: str) -> torch.Generator:
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.Generator(device).manual_seed(derive_seed(self.params.seed, key))

    @torch.inference_mode()
    def line_drawing(self, sample: Image.Image) -> Image.Image:
        return self.lines(center_square(sample, self.params.size), self.params.size)

    @torch.inference_mode()
    def reference(self, sample_id: str, sample: Image.Image) -> Image.Image:
        """t(sample, LoRA): call inside `lora(...)`."""
        size = self.params.size
        square = center_square(sample, size)
        control = self.lines(square, size)
        generator = self._generator(f"reference:{sample_id}")
        vae = self.pipe.vae
        pixels = self.pipe.image_processor.preprocess(square, height=size, width=size)
        pixels = pixels.to(self.pipe.device, dtype=vae.dtype)
        latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        with self.reference_only.attached(latents, generator):
            result = self.pipe(
                prompt="",
                image=control,
                height=size,
                width=size,
                num_inference_steps=self.params.steps,
                guidance_scale=self.params.guidance,
                controlnet_conditioning_scale=self.params.controlnet_scale,
                generator=generator,
                output_type="pil",
            )
        image: Image.Image = result.images[0]
        return image

    @torch.inference_mode()
    def spec(self, key: str, prompt: str) -> Image.Image:
        """One spec image of the loaded LoRA for a prompt; `key` fixes its seed."""
        size = self.params.size
        result = self.text2img(
            prompt=prompt,
            height=size,
            width=size,
            num_inference_steps=self.params.spec_steps,
            guidance_scale=self.params.spec_guidance,
            generator=self._generator(f"spec:{key}"),
            output_type="pil",
        )
        image: Image.Image = result.images[0]
        return image


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
