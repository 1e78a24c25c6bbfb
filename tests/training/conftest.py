from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.zoo.style_zoo import generate_zoo


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny models on shared cores: threads only add overhead


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zoo") / "train"
    return generate_zoo(
        root, n_styles=6, n_samples=5, split="train", seed=2, progress=False, size=48, failed_share=0.15
    )
