"""safetensors-only validation: header checks before loading, LoRA key styles and base models."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from inference_service.config import Settings
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
            r"data_offsets \[0, 12288\] outside the 100 data bytes",
        ),
        "padded": (
            raw_file(tmp_path / "a2.safetensors", {"w": entry}, b"\0" * (4 * 768 * 4 + 4)),
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
            "malformed header entry for tensor 'w': unknown dtype 'X9'",
        ),
        "offsets reversed": (
            raw_file(tmp_path / "h.safetensors", {"w": {**entry, "data_offsets": [8, 4]}}, b"\0" * 8),
            r"data_offsets \[8, 4\] outside",
        ),
    }
    (tmp_path / "f.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")
    for path, reason in cases.values():  # a failure prints the reason it expected
        with pytest.raises(LoraFileRejected, match=reason):
            validate_lora_file(path, max_header_bytes=1024 * 1024)


def test_pickles_are_refused_with_an_explanation(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.safetensors"
    torch.save({"w": torch.zeros(2)}, path)  # a zip of pickles under a safetensors name
    with pytest.raises(LoraFileRejected, match=r"pickle/zip checkpoint.*runs whatever code"):
        validate_lora_file(path)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(b"\x80\x04\x95" + b"\0" * 20)
    with pytest.raises(LoraFileRejected, match="pickle"):
        validate_lora_file(raw)


def raw_bytes(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


def tensor_header(shape: list[int], offsets: list[int] | None = None) -> bytes:
    entry = {"dtype": "F32", "shape": shape, "data_offsets": offsets or [0, 4]}
    return json.dumps({"w.lora_down.weight": entry}).encode()


BOMBS = {
    "deeply nested arrays": (b"[" * (1024**2 - 64), "nests too deeply"),
    "deeply nested objects": (b'{"a":' * 150_000, "nests too deeply"),
    "a million-dimension shape": (tensor_header([1] * 1_000_000), "at most 8 are accepted"),
    "2^62 dimensions": (tensor_header([2**62, 2**62]), "dimension 4611686018427387904 is too large"),
    "a 100,000-digit number": (
        b'{"w":{"dtype":"F32","shape":[' + b"9" * 100_000 + b'],"data_offsets":[0,4]}}',
        "a number has 100000 digits",
    ),
    "huge offsets": (tensor_header([1], [2**62, 2**62 + 4]), "outside the 4 data bytes"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_header_bombs_are_refused_within_a_second(tmp_path: Path, name: str) -> None:
    """Each bomb is refused with a clear reason under a cap large enough to let it be parsed, and
    the default 1 MiB cap refuses the oversize ones from the length field alone."""
    header, reason = BOMBS[name]
    path = raw_bytes(tmp_path / "bomb.safetensors", header, b"\0" * 4)
    started = time.perf_counter()
    with pytest.raises(LoraFileRejected, match=reason):
        validate_lora_file(path, max_header_bytes=16 * 1024**2)
    assert time.perf_counter() - started < 1.0
    started = time.perf_counter()
    with pytest.raises(LoraFileRejected):
        validate_lora_file(path)
    assert time.perf_counter() - started < 1.0


def test_giant_length_field_is_refused_before_reading(tmp_path: Path) -> None:
    path = raw_bytes(tmp_path / "big.safetensors", b"{}", length=2**64 - 1)
    started = time.perf_counter()
    with pytest.raises(LoraFileRejected, match=r"claims 18446744073709551615 bytes; the limit is 1048576"):
        validate_lora_file(path)
    assert time.perf_counter() - started < 1.0
    assert Settings().registration_max_header_bytes == 1024**2
    just_over = raw_bytes(tmp_path / "over.safetensors", b" " * (1024**2 + 1))
    with pytest.raises(LoraFileRejected, match="the limit is 1048576"):
        validate_lora_file(just_over)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'{"a": 1, "a": 2}', "the key 'a' appears twice"),
        (b'{"\xff\xfe": 1}', "not UTF-8 text"),
        (b'{"__metadata__": {"title": "x\\u0000y"}}', "NUL character or an unpaired surrogate"),
        (b'{"__metadata__": {"title": "\\ud800"}}', "NUL character or an unpaired surrogate"),
        (b'{"w\\u0000": {}}', "NUL character or an unpaired surrogate"),
        (b'{"__metadata__": {"title": 3}}', "must map strings to strings"),
        (b"[1, 2]", "not a JSON object"),
        (b"{'a': 1}", "not valid JSON"),
        (tensor_header([-1]), "shape must hold non-negative integers"),
        (tensor_header([True]), "shape must hold non-negative integers"),
        (tensor_header([1.5]), "shape must hold non-negative integers"),  # type: ignore[list-item]
        (tensor_header([1] * 9), "shape has 9 dimensions; at most 8"),
        (tensor_header([2**31]), "dimension 2147483648 is too large"),
        (tensor_header([1], [-4, 0]), "data_offsets must be two non-negative integers"),
        (tensor_header([1], [0, 4, 8]), "data_offsets must be two non-negative integers"),
        (b'{"w": {"dtype": "F32", "shape": [1]}}', "exactly dtype, shape and data_offsets"),
        (b'{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', "unknown dtype"),
        (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1e400]}}', "two non-negative"),
        (b'{"w": {"dtype": "F32", "shape": NaN, "data_offsets": [0, 4]}}', "shape is not a list"),
    ],
)
def test_parse_errors_become_clear_refusals(tmp_path: Path, header: bytes, reason: str) -> None:
    with pytest.raises(LoraFileRejected, match=reason):
        validate_lora_file(raw_bytes(tmp_path / "odd.safetensors", header, b"\0" * 4))


def test_the_largest_accepted_shape_passes_the_bounds(tmp_path: Path) -> None:
    """Eight dimensions just below 2^31 are within bounds: only the byte count then disagrees."""
    shape = [2**31 - 1] * 8
    with pytest.raises(LoraFileRejected, match=r"claims 4 bytes but F32\[2147483647"):
        validate_lora_file(raw_bytes(tmp_path / "wide.safetensors", tensor_header(shape), b"\0" * 4))


def test_hostile_optional_metadata_is_ignored_not_fatal(tmp_path: Path) -> None:
    """ss_tag_frequency is JSON inside a string: a bomb there costs the trigger word, nothing more,
    and text fields read from the metadata are bounded and storable."""
    for frequencies in ("[" * 200_000, '{"a": {"b": 1e999}}', '{"a": {"x\\u0000": 5}}', "9" * 5000):
        metadata = {"ss_tag_frequency": frequencies, "ss_output_name": "t" * 5000}
        started = time.perf_counter()
        info = validate_lora_file(write(tmp_path / "m.safetensors", kohya(768), metadata))
        assert time.perf_counter() - started < 1.0
        assert info.trigger_words == ()
        assert info.title == "t" * 200


def test_a_header_length_that_starts_like_a_pickle_is_still_a_lora(tmp_path: Path) -> None:
    """The length field is little-endian: its first byte is 0x80, a pickle's first byte, for 1
    header length in 32 (safetensors pads headers to 8 bytes). Such a file is a plain LoRA."""
    path = tmp_path / "padded.safetensors"
    for n in range(64):
        write(path, kohya(768), {"ss_base_model_version": "sd_v1", "ss_output_name": "x" * n})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert validate_lora_file(path).key_style == "kohya"


def test_a_web_page_saved_as_the_file_is_called_text(tmp_path: Path) -> None:
    page = tmp_path / "0123abcd.safetensors"
    page.write_bytes(b"<!DOCTYPE html><html><body>Sign in to download</body></html>")
    with pytest.raises(LoraFileRejected, match=r"is text .*not a safetensors file"):
        validate_lora_file(page)


def test_two_names_for_one_module_are_refused(tmp_path: Path) -> None:
    """lora_te_ and lora_te1_ name the same text encoder module: the second tensor would replace
    the first unchecked (here an int tensor, which no LoRA weight is)."""
    module = "text_model_encoder_layers_0_mlp_fc1"
    extra = {
        f"lora_te1_{module}.lora_down.weight": torch.randn(4, 768),
        f"lora_te1_{module}.lora_up.weight": torch.randn(3072, 4),
        f"lora_te_{module}.lora_down.weight": torch.zeros(4, 768, dtype=torch.int32),
        f"lora_te_{module}.lora_up.weight": torch.randn(3072, 4),
    }
    with pytest.raises(LoraFileRejected, match=r"two tensors are the (down|up) weight of the same module"):
        validate_lora_file(write(tmp_path / "twice.safetensors", kohya(768, extra=extra)))


def test_an_empty_tensor_is_refused(tmp_path: Path) -> None:
    path = raw_bytes(tmp_path / "empty.safetensors", tensor_header([2**31 - 1, 0], [0, 0]))
    with pytest.raises(LoraFileRejected, match="a dimension is 0"):
        validate_lora_file(path)
