"""Reference transfers through the real loading code on a tiny random SD + ControlNet + LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from inference_service.registration.generate import GenerationParams, TransferGenerator
from inference_service.registration.lines import ClassicalLines, HedLines
from inference_service.registration.reference_only import ReferenceAttnProcessor
from inference_service.registration.refusals import LoraFileRejected
from tests.helpers.tiny_sd import TinyModels, build_tiny_lora


@pytest.fixture(scope="module")
def generator(tiny_models: TinyModels) -> TransferGenerator:
    params = GenerationParams(
        base_model=str(tiny_models.base),
        controlnet=str(tiny_models.controlnet),
        size=64,
        steps=2,
        spec_steps=2,
    )
    return TransferGenerator.load(params)


def sample(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_lora_changes_transfers_fixed_seeds_and_base_restored(
    generator: TransferGenerator, tiny_models: TinyModels, tiny_lora: Path, tmp_path: Path
) -> None:
    base = generator.reference("s0", sample())
    assert base.size == (64, 64)
    assert np.array_equal(pixels(base), pixels(generator.reference("s0", sample())))  # fixed seed
    with generator.lora(tiny_lora):
        styled = generator.reference("s0", sample())
        spec = generator.spec("0-0", "a lighthouse")
    assert np.abs(pixels(styled) - pixels(base)).mean() > 1.0
    assert spec.size == (64, 64)
    assert np.array_equal(pixels(base), pixels(generator.reference("s0", sample())))  # unloaded exactly
    # The same weights in kohya key style give the same transfer.
    kohya = build_tiny_lora(tiny_models, tmp_path / "k.safetensors", seed=1, style="kohya")
    with generator.lora(kohya):
        assert np.array_equal(pixels(styled), pixels(generator.reference("s0", sample())))


def test_reference_only_injection_changes_the_result_and_detaches_cleanly(
    generator: TransferGenerator,
) -> None:
    unet = generator.pipe.unet
    before = dict(unet.attn_processors)
    with_reference = generator.reference("s1", sample(1))
    assert dict(unet.attn_processors) == before
    assert not unet._forward_pre_hooks
    original = generator.reference_only.attached
    calls = []

    def counting(latents: torch.Tensor, gen: torch.Generator):  # type: ignore[no-untyped-def]
        calls.append(latents.shape)
        return original(latents, gen)

    generator.reference_only.attached = counting  # type: ignore[method-assign]
    try:
        generator.reference("s1", sample(1))
    finally:
        generator.reference_only.attached = original  # type: ignore[method-assign]
    assert calls == [torch.Size([1, 4, 8, 8])]
    # The same pipeline call with the same random stream (the reference noise drawn first, as
    # `attached` draws it) but without the injection: only the stored tokens can differ, and a
    # no-op injection gives this exact image (next test). The tiny random UNet's attention moves
    # pixels little (about 0.17 of 255 on average here), so the check is "not identical".
    assert not np.array_equal(pixels(_without_injection(generator, 1)), pixels(with_reference))


def _without_injection(generator: TransferGenerator, seed: int) -> Image.Image:
    square = generator.line_drawing(sample(seed))
    stream = generator._generator(f"reference:s{seed}")
    torch.randn((1, 4, 8, 8), generator=stream)  # the reference noise `attached` draws first
    image: Image.Image = generator.pipe(
        prompt="",
        image=square,
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=stream,
    ).images[0]
    return image


def test_the_comparison_sees_a_no_op_injection(
    generator: TransferGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above is not satisfied by random draws alone: with every wrapped attention passing
    its input through untouched, the transfer equals the pipeline without injection exactly."""

    def pass_through(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *a, **k):  # type: ignore[no-untyped-def]
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *a, **k)

    monkeypatch.setattr(ReferenceAttnProcessor, "__call__", pass_through)
    assert np.array_equal(
        pixels(generator.reference("s2", sample(2))), pixels(_without_injection(generator, 2))
    )


def test_a_lora_for_another_base_model_is_refused(
    generator: TransferGenerator, tiny_models: TinyModels, tmp_path: Path
) -> None:
    path = tmp_path / "sd15.safetensors"
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file(
        {f"{key}.lora_down.weight": torch.randn(4, 768), f"{key}.lora_up.weight": torch.randn(32, 4)},
        str(path),
    )
    with (
        pytest.raises(LoraFileRejected, match="does not fit the configured base model") as refused,
        generator.lora(path),
    ):
        pass
    assert not generator.pipe.get_list_adapters()
    assert str(tiny_models.base.parent) not in refused.value.message  # the worker's model directory


def test_a_file_safetensors_cannot_load_is_refused_not_an_internal_error(
    generator: TransferGenerator, tmp_path: Path
) -> None:
    path = tmp_path / "broken.safetensors"
    header = b'{"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(LoraFileRejected, match="the LoRA file cannot be read"), generator.lora(path):
        pass


def test_line_drawings_classical_and_hed(tmp_path: Path) -> None:
    image = Image.new("RGB", (100, 100), "white")
    image.paste((0, 0, 0), (40, 0, 44, 100))  # one dark vertical stroke
    lines = np.asarray(ClassicalLines()(image, 64))
    assert lines.shape == (64, 64, 3)
    assert lines[:, 24:29].max() > 100  # a white line where the stroke was
    assert lines[:, :10].max() == 0  # black elsewhere
    from controlnet_aux.hed import ControlNetHED_Apache2

    torch.manual_seed(0)
    weights = tmp_path / "hed.safetensors"
    save_file(ControlNetHED_Apache2().state_dict(), str(weights))
    hed = HedLines(weights)(image, 64)
    assert hed.size == (64, 64)
    assert hed.mode == "RGB"
