"""safetensors-only validation: header checks before loading, LoRA key styles and base models."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from inference_service.registration.lora_file import validate_lora_file
from inference_service.registration.refusals import LoraFileRejected

ATTN = "down_blocks_0_attentions_0_transformer_blocks_0"
DOTTED = "down_blocks.0.attentions.0.transformer_blocks.0"


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def kohya(
    context: int, rank: int = 4, extra: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    base = f"lora_unet_{ATTN}_attn2_to_k"
    tensors = {
        f"{base}.lora_down.weight": torch.randn(rank, context),
        f"{base}.lora_up.weight": torch.randn(320, rank),
        f"{base}.alpha": torch.tensor(float(rank)),
        f"lora_unet_{ATTN}_attn1_to_q.lora_down.weight": torch.randn(rank, 320),
        f"lora_unet_{ATTN}_attn1_to_q.lora_up.weight": torch.randn(320, rank),
        f"lora_unet_{ATTN}_proj_in.lora_down.weight": torch.randn(rank, 320, 1, 1),
        f"lora_unet_{ATTN}_proj_in.lora_up.weight": torch.randn(320, rank, 1, 1),
    }
    tensors.update(extra or {})
    return tensors


def test_kohya_sd1_with_metadata(tmp_path: Path) -> None:
    metadata = {
        "ss_base_model_version": "sd_v1",
        "ss_output_name": "inkwash",
        "ss_tag_frequency": json.dumps({"10_inkwash": {"inkwash style": 40, "1girl": 12, "tree": 3}}),
        "modelspec.author": "ada",
    }
    info = validate_lora_file(write(tmp_path / "a.safetensors", kohya(768), metadata))
    assert (info.key_style, info.base_model, info.rank, info.modules, info.context_dim) == (
        "kohya",
        "sd1",
        4,
        3,
        768,
    )
    assert info.targets == ("unet",)
    assert info.trigger_words == ("inkwash style",)
    assert (info.title, info.author, info.nsfw) == ("inkwash", "ada", False)


def test_kohya_sdxl_by_shapes_and_text_encoder_2(tmp_path: Path) -> None:
    te2 = {
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 1280),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(1280, 4),
    }
    metadata = {
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        "modelspec.trigger_phrase": "a, b",
        "modelspec.tags": "style, NSFW",
    }
    info = validate_lora_file(write(tmp_path / "x.safetensors", kohya(2048, extra=te2), metadata))
    assert (info.base_model, info.targets, info.trigger_words, info.nsfw) == (
        "sdxl",
        ("text_encoder_2", "unet"),
        ("a", "b"),
        True,
    )


def test_diffusers_and_peft_key_styles(tmp_path: Path) -> None:
    diffusers = {
        f"unet.{DOTTED}.attn2.to_k.lora.down.weight": torch.randn(8, 768),
        f"unet.{DOTTED}.attn2.to_k.lora.up.weight": torch.randn(320, 8),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora.down.weight": torch.randn(8, 768),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora.up.weight": torch.randn(768, 8),
    }
    info = validate_lora_file(write(tmp_path / "d.safetensors", diffusers))
    assert (info.key_style, info.base_model, info.rank, info.targets) == (
        "diffusers",
        "sd1",
        8,
        ("text_encoder", "unet"),
    )
    peft = {
        f"unet.{DOTTED}.attn2.to_v.lora_A.weight": torch.randn(2, 2048),
        f"unet.{DOTTED}.attn2.to_v.lora_B.weight": torch.randn(640, 2),
    }
    info = validate_lora_file(write(tmp_path / "p.safetensors", peft))
    assert (info.key_style, info.base_model, info.rank) == ("peft", "sdxl", 2)


def test_unknown_base_model_is_left_to_the_requester(tmp_path: Path) -> None:
    """A width no supported family has (here a tiny test UNet's 32) decides nothing by itself."""
    info = validate_lora_file(write(tmp_path / "t.safetensors", kohya(32)))
    assert info.base_model is None
    assert info.context_dim == 32


@pytest.mark.parametrize(
    ("tensors", "metadata", "reason"),
    [
        (
            {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(320, 4, 3, 3)},
            None,
            "not a LoRA: 1 tensor",
        ),
        (kohya(1024), None, "this LoRA is for sd2"),
        (
            kohya(768),
            {"ss_base_model_version": "sdxl_base_v1-0"},
            "shapes are those of a sd1 LoRA but the metadata",
        ),
        ({f"lora_unet_{ATTN}_attn2_to_k.lora_down.weight": torch.randn(4, 768)}, None, "lacks its up matrix"),
        (
            {
                f"lora_unet_{ATTN}_attn2_to_k.lora_down.weight": torch.randn(4, 768),
                f"lora_unet_{ATTN}_attn2_to_k.lora_up.weight": torch.randn(320, 5),
            },
            None,
            "not a low-rank pair",
        ),
        ({f"lora_unet_{ATTN}_attn2_to_k.hada_w1_a": torch.randn(4, 768)}, None, "LyCORIS"),
        ({}, None, "holds no tensors"),
    ],
)
def test_non_lora_files_are_refused(
    tmp_path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(LoraFileRejected, match=reason):
        validate_lora_file(write(tmp_path / "bad.safetensors", tensors, metadata))


def raw_file(path: Path, header: dict[str, object], data: bytes, length: int | None = None) -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded) if length is None else length) + encoded + data)
    return path


def test_lying_headers_are_refused_before_loading(tmp_path: Path) -> None:
    entry = {"dtype": "F32", "shape": [4, 768], "data_offsets": [0, 4 * 768 * 4]}
    good = raw_file(tmp_path / "ok.safetensors", {"w.lora_down.weight": entry}, b"\0" * (4 * 768 * 4))
    with pytest.raises(LoraFileRejected, match="are not LoRA weights"):  # the header itself parsed fine
        validate_lora_file(good)
    cases = {
        "beyond the end": (
            raw_file(tmp_path / "a.safetensors", {"w": entry}, b"\0" * 100),
            "truncated or padded",
        ),
        "size mismatch": (
            raw_file(tmp_path / "b.safetensors", {"w": {**entry, "data_offsets": [0, 10]}}, b"\0" * 10),
            "the header lies",
        ),
        "overlap": (
            raw_file(
                tmp_path / "c.safetensors",
                {
                    "a": {**entry, "shape": [1], "data_offsets": [0, 4]},
                    "b": {**entry, "shape": [2], "data_offsets": [0, 8]},
                },
                b"\0" * 8,
            ),
            "overlapping or gapped",
        ),
        "huge length": (raw_file(tmp_path / "d.safetensors", {}, b"", length=2**40), "limit is"),
        "length past the file": (raw_file(tmp_path / "e.safetensors", {}, b"", length=5000), "has only"),
        "not json": (tmp_path / "f.safetensors", "not valid JSON"),
        "bad dtype": (
            raw_file(tmp_path / "g.safetensors", {"w": {**entry, "dtype": "X9"}}, b""),
            "malformed",
        ),
    }
    (tmp_path / "f.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")
    for name, (path, reason) in cases.items():
        with pytest.raises(LoraFileRejected, match=reason):
            validate_lora_file(path, max_header_bytes=1024 * 1024)
        assert name


def test_pickles_are_refused_with_an_explanation(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.safetensors"
    torch.save({"w": torch.zeros(2)}, path)  # a zip of pickles under a safetensors name
    with pytest.raises(LoraFileRejected, match=r"pickle/zip checkpoint.*runs whatever code"):
        validate_lora_file(path)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(b"\x80\x04\x95" + b"\0" * 20)
    with pytest.raises(LoraFileRejected, match="pickle"):
        validate_lora_file(raw)
