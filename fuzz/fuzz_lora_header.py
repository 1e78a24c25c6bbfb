"""Fuzz target: LoRA file validation (safetensors header first) only accepts or raises LoraFileRejected.

python fuzz/fuzz_lora_header.py -runs=5000 fuzz/corpus/lora_header

Seeds: a kohya SD1 LoRA (and one with a nested-JSON bomb in ss_tag_frequency), a non-LoRA, a
pickle, and header bombs (deep nesting, 64 dimensions, 2^62 dimensions, a 400-digit number,
duplicate keys, NUL/surrogate text, offsets past the end).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from inference_service.registration.lora_file import validate_lora_file
    from inference_service.registration.refusals import LoraFileRejected

# The validator reads a path (a download lands on disk first): one scratch file, rewritten per
# input, in FUZZ_SCRATCH_DIR (libFuzzer exits without running atexit handlers, so the caller's
# temporary directory is what cleans it up).
SCRATCH = (
    Path(os.environ.get("FUZZ_SCRATCH_DIR", tempfile.gettempdir())) / f"fuzz-lora-{os.getpid()}.safetensors"
)


def test_one_input(data: bytes) -> None:
    SCRATCH.write_bytes(data)
    try:
        info = validate_lora_file(SCRATCH, max_header_bytes=1 << 16)
    except LoraFileRejected:
        return
    # Whatever is accepted is a LoRA for a supported base model with a positive rank, and the text
    # it read from the metadata is bounded and storable (PostgreSQL refuses NUL and lone surrogates).
    assert info.base_model in ("sd1", "sdxl")
    assert info.rank > 0
    assert info.modules > 0
    for text in (info.title, info.author, info.license, *info.trigger_words):
        assert len(text) <= 200
        assert "\x00" not in text
        text.encode("utf-8")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
