"""Why a registration was refused: permanent, user-facing reasons (a retry would not help)."""

from __future__ import annotations

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
PICKLE_EXPLANATION = (
    "findlora accepts only .safetensors LoRA files. Checkpoint formats such as .ckpt, .pt, .pth and .bin "
    "are Python pickles: loading one runs whatever code its author put inside, so they are never opened "
    "here. Ask for (or convert to) the .safetensors version of this LoRA and register that."
)


class RegistrationRefused(Exception):
    """The LoRA cannot be registered as given; the message says why and is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FetchRefused(RegistrationRefused):
    """The download was refused or failed (scheme, host, address, size, status, timeout)."""


class LoraFileRejected(RegistrationRefused):
    """The file is not a safetensors LoRA for a supported base model."""


class DuplicateLora(RegistrationRefused):
    def __init__(self, slug: str, sha256: str) -> None:
        super().__init__(f"this file (sha256 {sha256[:12]}…) is already registered as {slug!r}")
        self.slug = slug
