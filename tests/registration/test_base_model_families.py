"""Base-model families at registration: detection from safetensors metadata to the vocabulary's ids,
which families the generator renders (and with which checkpoint), and RegisterLora's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.clients import Role
from findlora_client import ServiceCallError
from inference_service.config import Settings
from inference_service.registration.families import generator_family, generator_models, registered_family
from inference_service.registration.generate import GenerationParams
from inference_service.registration.lora_file import validate_lora_file
from inference_service.registration.refusals import LoraFileRejected
from inference_service.server import start_service
from protos import findlora_pb2 as pb
from tests.helpers.service import issue_token, service_client
from tests.registration.test_lora_file import kohya, write

SDXL_TE2 = {
    "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 1280),
    "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": (1280, 4),
}


def sdxl_tensors() -> dict[str, object]:
    import torch

    return kohya(2048, extra={k: torch.randn(*shape) for k, shape in SDXL_TE2.items()})


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, "sdxl"),
        (  # kohya says SDXL for every SDXL-shaped checkpoint; the checkpoint's name tells Pony
            {
                "ss_base_model_version": "sdxl_base_v1-0",
                "ss_sd_model_name": "ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
            },
            "pony",
        ),
        ({"ss_sd_model_name": "/models/Illustrious-XL-v0.1.safetensors"}, "illustrious"),
        ({"ss_sd_model_name": "C:\\sd\\noobaiXLNAIXL_vPred10Version.safetensors"}, "noobai"),
        ({"ss_sd_model_name": "sd_xl_base_1.0.safetensors"}, "sdxl"),
        ({}, "sdxl"),  # shapes alone: the architecture
    ],
)
def test_sdxl_shaped_files_map_to_vocabulary_ids(
    tmp_path: Path, metadata: dict[str, str], family: str
) -> None:
    info = validate_lora_file(write(tmp_path / "x.safetensors", sdxl_tensors(), metadata))  # type: ignore[arg-type]
    assert info.base_model == family


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"ss_base_model_version": "sd_v1"}, "sd1"),
        ({"modelspec.architecture": "stable-diffusion-v1/lora"}, "sd1"),
        ({"ss_sd_model_name": "v1-5-pruned-emaonly.safetensors"}, "sd1"),
        ({"ss_sd_model_name": "runwayml/stable-diffusion-v1-5"}, "sd1"),
    ],
)
def test_sd1_files_map_to_sd1(tmp_path: Path, metadata: dict[str, str], family: str) -> None:
    assert validate_lora_file(write(tmp_path / "a.safetensors", kohya(768), metadata)).base_model == family


@pytest.mark.parametrize(
    ("metadata", "refusal"),
    [
        ({"modelspec.architecture": "flux-1-dev/lora"}, "metadata says flux1-dev"),
        ({"modelspec.architecture": "stable-diffusion-3.5-large/lora"}, "metadata says sd35-large"),
        (
            {"ss_base_model_version": "sdxl_base_v1-0"},
            "shapes are those of a sd1 LoRA but the metadata says sdxl",
        ),
    ],
)
def test_metadata_of_another_architecture_is_refused(
    tmp_path: Path, metadata: dict[str, str], refusal: str
) -> None:
    with pytest.raises(LoraFileRejected, match=refusal):
        validate_lora_file(write(tmp_path / "a.safetensors", kohya(768), metadata))


def test_a_derivative_renders_only_with_its_own_checkpoint(settings: Settings) -> None:
    assert generator_family("sd1", settings) == "sd1"
    assert generator_family("sdxl", settings) == "sdxl"
    with pytest.raises(LoraFileRejected, match=r"Pony Diffusion V6 XL \(pony\) LoRA: it loads on SDXL 1.0"):
        generator_family("pony", settings)
    with pytest.raises(
        LoraFileRejected, match=r"Flux.1 Dev \(flux1-dev\) LoRA: references are generated only"
    ):
        generator_family("flux1-dev", settings)
    with pytest.raises(LoraFileRejected, match=r"other:pony-v7"):
        generator_family("other:pony-v7", settings)

    configured = settings.model_copy(
        update={"derivative_base_models": {"Pony Diffusion V6 XL": "/ckpt/pony"}}
    )
    assert generator_family("pony", configured) == "pony"
    assert generator_models(configured, "pony") == ("/ckpt/pony", configured.sdxl_controlnet)
    assert generator_models(configured, "sdxl") == (configured.sdxl_base_model, configured.sdxl_controlnet)
    params = GenerationParams.from_settings(configured, "pony")
    assert (params.base_model, params.controlnet) == ("/ckpt/pony", configured.sdxl_controlnet)
    with pytest.raises(LoraFileRejected, match="Illustrious"):
        generator_family("illustrious", configured)


def test_declared_and_detected_families_agree_or_refuse() -> None:
    assert registered_family("pony", "sdxl") == ("pony", "")  # the file names the architecture only
    assert registered_family("", "sdxl") == ("sdxl", "")
    assert registered_family("sd1", None) == ("sd1", "")
    family, warning = registered_family("other:my-mix", "sd1")
    assert family == "sd1"
    assert "not a known family" in warning
    with pytest.raises(LoraFileRejected, match=r"the file is a Pony Diffusion V6 XL \(pony\) LoRA, not SDXL"):
        registered_family("sdxl", "pony")
    with pytest.raises(LoraFileRejected, match="does not tell its base model"):
        registered_family("", None)


@pytest.mark.db
async def test_register_lora_refuses_families_it_cannot_render_by_name(settings: Settings) -> None:
    service = await start_service(settings, "127.0.0.1:0")
    try:
        token = await issue_token(service, Role.MODERATE)
        async with service_client(service, token) as client:
            for spelling, expected in [
                ("Pony", "Pony Diffusion V6 XL (pony) LoRA: it loads on SDXL 1.0 but shows its style only"),
                ("Flux.1 D", "Flux.1 Dev (flux1-dev) LoRA: references are generated only for SD 1.x"),
            ]:
                metadata = pb.LoraMetadata(name=f"A {spelling}", base_model=spelling)
                with pytest.raises(ServiceCallError) as refused:
                    await client.register_lora(
                        "https://civitai.com/api/download/models/1", metadata, requested_by="m"
                    )
                assert refused.value.code is not None
                assert refused.value.code.name == "INVALID_ARGUMENT"
                assert expected in refused.value.message
    finally:
        await service.stop(0.5)
