"""Triplet losses on L2-normalised embeddings: max(|a-p| - |a-n| + margin, 0)."""

from __future__ import annotations

import torch
from torch.nn import functional


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """The paper's loss, averaged over the triplets of a batch."""
    d_ap = (anchor - positive).norm(dim=1)
    d_an = (anchor - negative).norm(dim=1)
    return functional.relu(d_ap - d_an + margin).mean()


def _pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    squared = (embeddings[:, None, :] - embeddings[None, :, :]).pow(2).sum(dim=2)
    return (squared + 1e-12).sqrt()  # eps: the diagonal has no finite gradient at 0


def batch_all_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float
) -> tuple[torch.Tensor, float]:
    """Every valid triplet in the batch (a != p same label, n other label); the loss is the mean
    over triplets that still violate the margin. Returns (loss, share of active triplets)."""
    distances = _pairwise_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive_pair = same & ~eye  # (a, p)
    negative_pair = ~same  # (a, n)
    valid = positive_pair[:, :, None] & negative_pair[:, None, :]
    losses = functional.relu(distances[:, :, None] - distances[:, None, :] + margin) * valid
    active = (losses > 1e-9).sum()
    total = valid.sum()
    if total == 0:
        return embeddings.sum() * 0.0, 0.0
    loss = losses.sum() / active.clamp(min=1)
    return loss, float(active) / float(total)
