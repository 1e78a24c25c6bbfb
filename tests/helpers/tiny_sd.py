"""Tiny random SD1-shaped pipeline, ControlNet and LoRA files, saved to disk so that tests load them
through the same `from_pretrained` code path as real model ids (configs from the offline notes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class TinyModels:
    base: Path
    controlnet: Path


def _tokenizer() -> object:
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(256)]
    vocab: dict[str, int] = {}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    for ch in chars:
        vocab.setdefault(ch + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = 77
    return tokenizer


def build_tiny_models(root: Path, seed: int = 0) -> TinyModels:
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            vocab_size=514,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(root / "base")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    # from_unet zero-initialises the output convolutions: give them weight so control matters.
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if "zero_conv" in name or "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                param.normal_(0, 0.02)
    controlnet.save_pretrained(root / "controlnet")
    return TinyModels(root / "base", root / "controlnet")


def build_tiny_lora(models: TinyModels, path: Path, seed: int, style: str = "diffusers") -> Path:
    """A random rank-4 LoRA on the tiny UNet's attention, saved as one .safetensors file in the
    diffusers (`unet....lora.down.weight`) or kohya (`lora_unet_...lora_down.weight`) key style."""
    from diffusers import UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(models.base / "unet")
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    unet.add_adapter(config)
    with torch.no_grad():  # lora_B starts at zero; a LoRA that changes nothing tests nothing
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    state = get_peft_model_state_dict(unet)
    if style == "kohya":
        tensors = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
    else:
        tensors = {f"unet.{k}": v for k, v in convert_state_dict_to_diffusers(state).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def build_tiny_loras(models: TinyModels, folder: Path, count: int, seed: int = 100) -> list[Path]:
    """`count` different LoRA files cheaply: one LoRA built, then each copy's weights redrawn
    around it with its own seed (every file differs, so every sha256 does)."""
    from safetensors.torch import load_file, save_file

    first = build_tiny_lora(models, folder / "lora-00.safetensors", seed=seed)
    tensors = load_file(str(first))
    paths = [first]
    for index in range(1, count):
        generator = torch.Generator().manual_seed(seed + index)
        redrawn = {k: v + 0.5 * torch.randn(v.shape, generator=generator) for k, v in tensors.items()}
        path = folder / f"lora-{index:02d}.safetensors"
        save_file({k: v.contiguous() for k, v in redrawn.items()}, str(path))
        paths.append(path)
    return paths
