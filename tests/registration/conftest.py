"""Tiny random SD models, built once per session and loaded through the real from_pretrained path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_sd import TinyModels, build_tiny_lora, build_tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return build_tiny_models(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_lora(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lora(tiny_models, tmp_path_factory.mktemp("lora") / "inkwash.safetensors", seed=1)
