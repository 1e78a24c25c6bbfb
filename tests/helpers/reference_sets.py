"""In-memory reference sets for training tests, built from a validity mask."""

from __future__ import annotations

import torch

from inference_service.training.references import CleansingReport, ReferenceSet


def labelled_reference_set(valid: torch.Tensor) -> ReferenceSet:
    """LoRAs s0.. x samples x0.. with the given (loras, samples) validity mask; the 2 x 2 image of
    (lora, sample) holds the value lora * samples + sample, so a batch says what it picked."""
    n_loras, n_samples = valid.shape
    values = torch.arange(n_loras * n_samples, dtype=torch.uint8).view(n_loras, n_samples, 1, 1, 1)
    images = values.expand(n_loras, n_samples, 3, 2, 2).clone()
    report = CleansingReport(None, int(valid.sum()), 0, int((~valid).sum()))
    names = [f"s{i}" for i in range(n_loras)], [f"x{i}" for i in range(n_samples)]
    return ReferenceSet.from_dense(*names, images, valid, report)
