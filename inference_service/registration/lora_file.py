"""Validate a LoRA file without loading it: .safetensors only, header capped and parsed first.

The header is read and checked before a single tensor byte is touched: its length is capped (1 MiB
by default) before it is read, its JSON is parsed with bounded numbers and nesting, every tensor's
rank (at most 8) and dimensions (each below 2^31) are checked before they are multiplied, its
offsets must agree with its dtype and shape and the tensors must tile the data section exactly (a
"lying" header is refused). Every problem is a LoraFileRejected with a message for the user. Then
the tensor names and shapes must form a LoRA (kohya, diffusers or peft key style) for a supported
base model.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from findlora_client.base_models import architecture, display_name, resolve, spelling_key
from inference_service.registration.refusals import PICKLE_EXPLANATION, LoraFileRejected

SUPPORTED_BASE_MODELS = ("sd1", "sdxl")  # architectures the reference generator runs
MAX_RANK = 1024
MAX_HEADER_BYTES = 1024**2  # a LoRA header: a few hundred tensor entries and training metadata
MAX_DIMS = 8  # a LoRA tensor has at most 4; safetensors itself allows any rank
MAX_DIM = 2**31  # each dimension must be below this
_MAX_INT_DIGITS = 20
_MAX_TEXT = 200  # title, author, license and each trigger word read from the metadata
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
# Cross-attention context width -> base model family (the text encoder width the UNet attends to).
_CONTEXT_DIMS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}

_KOHYA = re.compile(
    r"^(lora_unet|lora_te|lora_te1|lora_te2)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$"
)
_DIFFUSERS = re.compile(r"^(unet|text_encoder|text_encoder_2)\.(.+?)(?:\.lora\.|_lora\.)(down|up)\.weight$")
_PEFT = re.compile(
    r"^(?:base_model\.model\.)?(?:(unet|text_encoder|text_encoder_2)\.)?(.+)\.(lora_A\.weight|lora_B\.weight|alpha)$"
)
_LYCORIS = re.compile(r"\.(hada_|lokr_|dora_scale|lora_mid|oft_|lora_magnitude_vector)")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class LoraInfo:
    key_style: str  # kohya | diffusers | peft
    base_model: str | None  # a family id with an sd1/sdxl architecture; None when nothing tells
    rank: int
    modules: int
    targets: tuple[str, ...]  # unet, text_encoder, text_encoder_2
    context_dim: int | None
    metadata: dict[str, str] = field(default_factory=dict)
    trigger_words: tuple[str, ...] = ()
    title: str = ""
    author: str = ""
    license: str = ""
    nsfw: bool = False

    def to_json(self) -> dict[str, Any]:
        """What the job row keeps: every field but the raw header metadata."""
        values = asdict(self)
        del values["metadata"]
        return {key: list(v) if isinstance(v, tuple) else v for key, v in values.items()}


def _not_safetensors(path: Path, head: bytes, problem: str, *, may_be_text: bool = True) -> LoraFileRejected:
    """The refusal for a header that cannot be one. Named a pickle or zip checkpoint only then: the
    first byte of a valid header's length is 0x80, a pickle's first byte, in 1 file of 32."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return LoraFileRejected(
            f"{path.name} is a pickle/zip checkpoint, not safetensors. {PICKLE_EXPLANATION}"
        )
    if may_be_text and all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):  # 1 MiB has zeros
        return LoraFileRejected(
            f"{path.name} is text (a web page or an error message?), not a safetensors file"
        )
    return LoraFileRejected(problem)


def read_header(
    path: Path, max_header_bytes: int = MAX_HEADER_BYTES
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and check a safetensors header; returns tensors by name and the __metadata__.

    Every refusal is a LoraFileRejected: the length field is capped before a byte of the header is
    read, and each tensor's rank and dimensions are bounded before anything is multiplied."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _not_safetensors(
                path,
                head,
                f"{path.name} is too short to be a safetensors file ({size} bytes)",
                may_be_text=False,
            )
        length = int.from_bytes(head, "little")
        if length > max_header_bytes:
            raise _not_safetensors(
                path,
                head,
                f"{path.name}: the safetensors header claims {length} bytes; the limit is {max_header_bytes}",
            )
        if 8 + length > size:
            raise _not_safetensors(
                path,
                head,
                f"{path.name}: the header claims {length} bytes but the file has only {size - 8} after the "
                "length field (truncated, or not safetensors)",
            )
        raw = handle.read(length)
    header = _parse_json(path, raw)
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise LoraFileRejected(f"{path.name}: __metadata__ must map strings to strings")
    for text in (*header, *metadata, *metadata.values()):
        if not _is_text(text):
            raise LoraFileRejected(
                f"{path.name}: the header holds a string with a NUL character or an unpaired surrogate "
                "(not text); refused"
            )
    data_bytes = size - 8 - length
    tensors = {name: _tensor(path, name, entry, data_bytes) for name, entry in header.items()}
    _check_layout(path, tensors, data_bytes)
    return tensors, metadata


class _Malformed(ValueError):
    """Raised from inside the JSON parser's hooks; the message is for the user."""


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoraFileRejected(
            f"{path.name}: the safetensors header is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_bounded_int)
    except _Malformed as exc:
        raise LoraFileRejected(f"{path.name}: the safetensors header is malformed: {exc}") from None
    except RecursionError:
        # The C parser recurses per nesting level; a valid header nests three levels at most.
        raise LoraFileRejected(f"{path.name}: the safetensors header nests too deeply to be one") from None
    except ValueError as exc:
        raise LoraFileRejected(f"{path.name}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise LoraFileRejected(f"{path.name}: the safetensors header is not a JSON object")
    return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Malformed(f"the key {key[:120]!r} appears twice")
        seen.add(key)
    return dict(pairs)


def _bounded_int(digits: str) -> int:
    # Offsets and dimensions of a real file fit in 20 digits; longer literals are refused unparsed
    # (converting them is quadratic in their length).
    if len(digits.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Malformed(f"a number has {len(digits)} digits; no offset or dimension needs more than 20")
    return int(digits)


def _is_text(value: str) -> bool:
    """Storable text: PostgreSQL refuses NUL characters and unpaired surrogates."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0  # not bool, not float


def _tensor(path: Path, name: str, entry: Any, data_bytes: int) -> TensorInfo:
    """One header entry, checked field by field: rank and dimensions are bounded before the
    product of the shape is taken, so a header cannot make the validator do huge arithmetic."""

    def bad(why: str) -> LoraFileRejected:
        return LoraFileRejected(f"{path.name}: malformed header entry for tensor {name[:120]!r}: {why}")

    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise bad("it must be an object with exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPE_BYTES:
        raise bad(f"unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list):
        raise bad("shape is not a list")
    if len(shape) > MAX_DIMS:
        raise bad(f"shape has {len(shape)} dimensions; at most {MAX_DIMS} are accepted")
    if not all(_is_count(v) for v in shape):
        raise bad("shape must hold non-negative integers")
    if 0 in shape:
        raise bad("a dimension is 0 (an empty tensor is no LoRA weight)")
    if any(v >= MAX_DIM for v in shape):
        raise bad(f"dimension {max(shape)} is too large (each must be below 2^31)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(v) for v in offsets):
        raise bad("data_offsets must be two non-negative integers [start, end]")
    start, end = offsets
    if not start <= end <= data_bytes:
        raise LoraFileRejected(
            f"{path.name}: tensor {name[:120]!r} has data_offsets [{start}, {end}] outside the "
            f"{data_bytes} data bytes of the file (truncated, or the header lies)"
        )
    needed = math.prod(shape) * _DTYPE_BYTES[dtype]
    if end - start != needed:
        raise LoraFileRejected(
            f"{path.name}: tensor {name[:120]!r} claims {end - start} bytes but {dtype}{shape} needs "
            f"{needed} (the header lies)"
        )
    return TensorInfo(dtype, tuple(shape), start, end)


def _check_layout(path: Path, tensors: dict[str, TensorInfo], data_bytes: int) -> None:
    """The tensors must tile the data section: no gap, no overlap, nothing past the end."""
    position = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start != position:
            raise LoraFileRejected(
                f"{path.name}: tensor {name[:120]!r} starts at byte {info.start}, expected {position} "
                "(overlapping or gapped data; the header lies)"
            )
        position = info.end
    if position != data_bytes:
        raise LoraFileRejected(
            f"{path.name}: the header describes {position} data bytes but the file holds {data_bytes} "
            "(truncated or padded; the header lies)"
        )


@dataclass
class _Module:
    down: TensorInfo | None = None
    up: TensorInfo | None = None
    alpha: TensorInfo | None = None


def _group(tensors: dict[str, TensorInfo]) -> tuple[str, dict[tuple[str, str], _Module]]:
    """Module (target, name) -> its down/up/alpha tensors, for the one key style the file uses."""
    odd = [n for n in tensors if _LYCORIS.search(n)]
    if odd:
        raise LoraFileRejected(
            f"LyCORIS/DoRA tensors (such as {odd[0][:100]!r}) are not supported: register a plain LoRA"
        )
    styles: Counter[str] = Counter()
    modules: dict[tuple[str, str], _Module] = {}
    unknown = []
    for name, info in tensors.items():
        if m := _KOHYA.match(name):
            style, target, module, part = "kohya", m.group(1), m.group(2), m.group(3).split(".")[0]
            target = {"lora_unet": "unet", "lora_te": "text_encoder", "lora_te1": "text_encoder",
                      "lora_te2": "text_encoder_2"}[target]  # fmt: skip
            part = {"lora_down": "down", "lora_up": "up"}.get(part, part)
        elif m := _DIFFUSERS.match(name):
            style, target, module, part = "diffusers", m.group(1), m.group(2), m.group(3)
        elif m := _PEFT.match(name):
            style, target, module = "peft", m.group(1) or "unet", m.group(2)
            part = {"lora_A": "down", "lora_B": "up"}.get(m.group(3).split(".")[0], "alpha")
        else:
            unknown.append(name)
            continue
        styles[style] += 1
        slot = modules.setdefault((target, module.replace(".", "_")), _Module())
        if getattr(slot, part) is not None:  # lora_te_x / lora_te1_x, a.b_c / a_b.c: one module
            raise LoraFileRejected(
                f"not a LoRA: two tensors are the {part} weight of the same module, such as {name[:120]!r}"
            )
        setattr(slot, part, info)
    if unknown:
        raise LoraFileRejected(
            f"not a LoRA: {len(unknown)} tensor name(s) are not LoRA weights, such as "
            f"{sorted(unknown)[0][:120]!r} (a full checkpoint or another kind of model?)"
        )
    if not modules:
        raise LoraFileRejected("not a LoRA: the file holds no tensors")
    if len(styles) > 1:
        raise LoraFileRejected(f"not a LoRA: key styles are mixed ({', '.join(sorted(styles))})")
    return styles.most_common(1)[0][0], modules


def _check_module(name: str, module: _Module) -> tuple[int, int]:
    """(rank, input width) of one LoRA module after checking its shapes."""
    if module.down is None or module.up is None:
        raise LoraFileRejected(
            f"not a LoRA: module {name[:120]!r} lacks its {'up' if module.down else 'down'} matrix"
        )
    down, up = module.down, module.up
    for info in (down, up):
        if info.dtype not in _FLOAT_DTYPES:
            raise LoraFileRejected(f"not a LoRA: module {name[:120]!r} has {info.dtype} weights")
    rank = down.shape[0] if down.shape else 0
    ok = (
        len(down.shape) in (2, 4)
        and len(up.shape) == len(down.shape)
        and 1 <= rank <= MAX_RANK
        and up.shape[1] == rank
        and (len(up.shape) == 2 or up.shape[2:] == (1, 1))
        and all(v > 0 for v in down.shape + up.shape)
    )
    if not ok:
        raise LoraFileRejected(
            f"not a LoRA: module {name[:120]!r} has down {list(down.shape)} and up {list(up.shape)}, "
            "which are not a low-rank pair"
        )
    if module.alpha is not None and math.prod(module.alpha.shape) != 1:
        raise LoraFileRejected(f"not a LoRA: module {name[:120]!r} has a non-scalar alpha")
    return rank, down.shape[1]


# kohya writes sdxl_base_v1-0 for every SDXL-shaped checkpoint, Pony's included: the family of a
# derivative shows only in the training checkpoint's file name (ss_sd_model_name).
_CHECKPOINT_FAMILIES = (("pony", "pony"), ("noob", "noobai"), ("illustrious", "illustrious"),
                        ("playground", "playground"))  # fmt: skip


def _metadata_base_model(metadata: dict[str, str]) -> str | None:
    """The family the training metadata names (a canonical id of findlora_client.base_models):
    modelspec.architecture or ss_base_model_version, refined by the checkpoint's name."""
    stated = None
    for key in ("modelspec.architecture", "ss_base_model_version"):
        value = metadata.get(key, "").split("/")[0]  # modelspec: "<architecture>/<adapter>"
        resolved = resolve(value)
        if value.strip() and architecture(resolved.id):
            stated = resolved.id
            break
    checkpoint_name = metadata.get("ss_sd_model_name", "").replace("\\", "/").rsplit("/", 1)[-1]
    checkpoint = spelling_key(checkpoint_name.removesuffix(".safetensors").removesuffix(".ckpt"))
    for keyword, family in _CHECKPOINT_FAMILIES:
        if keyword in checkpoint and (stated is None or architecture(stated) == architecture(family)):
            return family
    if stated is not None:
        return stated
    if checkpoint and architecture(resolve(checkpoint_name).id):
        return resolve(checkpoint_name).id
    # Older trainers: free text such as "sd_v1" or "v2-1_768-ema-pruned".
    text = " ".join(metadata.get(k, "") for k in ("ss_base_model_version", "ss_sd_model_name")).lower()
    if "xl" in text:
        return "sdxl"
    if "v2" in text or "sd_2" in text or "sd2" in text:
        return "sd2"
    if "v1" in text or "sd_1" in text or "sd1" in text:
        return "sd1"
    return None


def _trigger_words(metadata: dict[str, str]) -> tuple[str, ...]:
    phrase = metadata.get("modelspec.trigger_phrase", "").strip()
    if phrase:
        return tuple(w.strip()[:_MAX_TEXT] for w in phrase.split(",") if w.strip())[:8]
    try:
        # A JSON document inside a metadata string: parsed under the same guards as the header.
        frequencies = json.loads(metadata.get("ss_tag_frequency", "{}"), parse_int=_bounded_int)
        counts: Counter[str] = Counter()
        for tags in frequencies.values():
            counts.update({str(k).strip(): int(v) for k, v in tags.items()})
    except (ValueError, AttributeError, TypeError, OverflowError, RecursionError):
        return ()  # a broken optional field: no trigger word, not a refusal
    # kohya training captions put the activation token first, so it is the most frequent tag.
    return tuple(tag[:_MAX_TEXT] for tag, _ in counts.most_common(1) if tag and _is_text(tag))


def _nsfw(metadata: dict[str, str]) -> bool:
    tags = metadata.get("modelspec.tags", "").lower().replace(";", ",").split(",")
    return any(t.strip() == "nsfw" for t in tags) or metadata.get("modelspec.nsfw", "").lower() == "true"


def inspect_lora(tensors: dict[str, TensorInfo], metadata: dict[str, str]) -> LoraInfo:
    style, modules = _group(tensors)
    ranks: Counter[int] = Counter()
    context_dims: set[int] = set()
    for (target, name), module in modules.items():
        rank, width = _check_module(f"{target}.{name}", module)
        ranks[rank] += 1
        if target == "unet" and "attn2" in name and ("to_k" in name or "to_v" in name):
            context_dims.add(width)
    targets = tuple(sorted({t for t, _ in modules}))
    if len(context_dims) > 1:
        raise LoraFileRejected(f"not a LoRA: cross-attention widths disagree ({sorted(context_dims)})")
    context_dim = next(iter(context_dims), None)
    from_shapes = _CONTEXT_DIMS.get(context_dim) if context_dim is not None else None
    if from_shapes is None and "text_encoder_2" in targets:
        from_shapes = "sdxl"
    from_metadata = _metadata_base_model(metadata)
    metadata_arch = architecture(from_metadata) if from_metadata else None
    if from_shapes and metadata_arch and from_shapes != metadata_arch:
        raise LoraFileRejected(
            f"the tensor shapes are those of a {from_shapes} LoRA but the metadata says {from_metadata}"
        )
    # The metadata can name a derivative (pony) where the shapes tell only the architecture (sdxl).
    base = from_metadata if metadata_arch else from_shapes or from_metadata
    if base is not None and architecture(base) not in SUPPORTED_BASE_MODELS:
        raise LoraFileRejected(
            f"this LoRA is for {base} ({display_name(base)}); supported base models: "
            f"{', '.join(SUPPORTED_BASE_MODELS)} and their derivatives"
        )
    return LoraInfo(
        key_style=style,
        base_model=base,
        rank=ranks.most_common(1)[0][0],
        modules=len(modules),
        targets=targets,
        context_dim=context_dim,
        metadata=metadata,
        trigger_words=_trigger_words(metadata),
        title=(metadata.get("modelspec.title", "") or metadata.get("ss_output_name", ""))[:_MAX_TEXT],
        author=metadata.get("modelspec.author", "")[:_MAX_TEXT],
        license=metadata.get("modelspec.license", "")[:_MAX_TEXT],
        nsfw=_nsfw(metadata),
    )


def validate_lora_file(path: Path, max_header_bytes: int = MAX_HEADER_BYTES) -> LoraInfo:
    tensors, metadata = read_header(path, max_header_bytes)
    return inspect_lora(tensors, metadata)
