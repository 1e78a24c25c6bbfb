"""Reference-only attention injection, implemented here (the community pipeline is not fetchable).

Before every UNet call of the pipeline, a forward pre-hook runs the UNet once on the reference
image's latents noised to the same timestep ("write": each self-attention stores its input); the
pipeline's own call then runs with every self-attention attending over its own tokens and the
stored reference tokens ("read"). The reference thereby lends its appearance (colours, textures,
identity) while ControlNet holds the layout and the LoRA imposes the style. Detaching restores the
original processors exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class _Bank:
    def __init__(self) -> None:
        self.mode = "off"  # off | write | read
        self.stored: dict[str, torch.Tensor] = {}


class ReferenceAttnProcessor:
    """Wraps a self-attention processor: stores its input in write mode, extends keys in read mode."""

    def __init__(self, inner: Any, bank: _Bank, name: str) -> None:
        self.inner = inner
        self.bank = bank
        self.name = name

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if self.bank.mode == "write":
            self.bank.stored[self.name] = hidden_states.detach()
        elif self.bank.mode == "read" and encoder_hidden_states is None:
            reference = self.bank.stored.get(self.name)
            if reference is not None and reference.shape[0] == hidden_states.shape[0]:
                encoder_hidden_states = torch.cat([hidden_states, reference], dim=1)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)  # type: ignore[no-any-return]


class ReferenceOnly:
    """Attach to a diffusers UNet + scheduler for the duration of one generation."""

    def __init__(self, unet: Any, scheduler: Any) -> None:
        self.unet = unet
        self.scheduler = scheduler
        self.bank = _Bank()
        self._inside = False
        self._latents: torch.Tensor | None = None
        self._noise: torch.Tensor | None = None

    @contextmanager
    def attached(self, reference_latents: torch.Tensor, generator: torch.Generator) -> Iterator[None]:
        originals = dict(self.unet.attn_processors)
        wrapped = {
            name: ReferenceAttnProcessor(proc, self.bank, name) if name.endswith("attn1.processor") else proc
            for name, proc in originals.items()
        }
        self._latents = reference_latents
        self._noise = torch.randn(
            reference_latents.shape,
            generator=generator,
            device=generator.device,
            dtype=reference_latents.dtype,
        ).to(reference_latents.device)
        self.unet.set_attn_processor(wrapped)
        handle = self.unet.register_forward_pre_hook(self._before_unet, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
            self.unet.set_attn_processor(originals)
            self.bank.mode, self.bank.stored = "off", {}
            self._latents = self._noise = None

    def _before_unet(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._inside or self._latents is None or self._noise is None:
            return
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1)[:1]
        noisy = self.scheduler.add_noise(self._latents, self._noise, t)
        noisy = self.scheduler.scale_model_input(noisy, t)
        noisy = noisy.to(sample.dtype).repeat(sample.shape[0] // noisy.shape[0], 1, 1, 1)
        encoder_hidden_states = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        self._inside = True
        self.bank.mode = "write"
        try:
            module(
                noisy,
                timestep,
                encoder_hidden_states=encoder_hidden_states,
                added_cond_kwargs=kwargs.get("added_cond_kwargs"),
                timestep_cond=kwargs.get("timestep_cond"),
                return_dict=False,
            )
        finally:
            self._inside = False
            self.bank.mode = "read"
