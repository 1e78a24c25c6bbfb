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


def _class_mean_distances(
    embeddings: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d_avg inside a batch: for every anchor i and every class c of the batch, the mean distance
    from i to the members of c other than i. Returns (d_avg (B, C), own-class one-hot (B, C),
    usable (B, C): the class has a member other than the anchor)."""
    distances = _pairwise_distances(embeddings)
    classes, index = labels.unique(return_inverse=True)  # type: ignore[no-untyped-call]
    member = functional.one_hot(index, len(classes)).to(embeddings.dtype)  # (B, C)
    counts = member.sum(dim=0, keepdim=True) - member  # the anchor is not its own reference
    sums = distances @ member - distances.diagonal()[:, None] * member
    usable = counts > 0
    return sums / counts.clamp(min=1), member.bool(), usable


def davg_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float
) -> tuple[torch.Tensor, float]:
    """The triplet loss on the ranking it serves: the anchor's d_avg to its own class must beat its
    d_avg to every other class of the batch by the margin (mean over violating pairs)."""
    davg, own, usable = _class_mean_distances(embeddings, labels)
    anchors = (own & usable).any(dim=1)
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0, 0.0
    positive = (davg * own).sum(dim=1, keepdim=True)
    valid = usable & ~own & anchors[:, None]
    losses = functional.relu(positive - davg + margin) * valid
    active = (losses > 1e-9).sum()
    return losses.sum() / active.clamp(min=1), float(active) / float(valid.sum().clamp(min=1))


def davg_softmax_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, float]:
    """Cross-entropy of "which class of the batch has the smallest d_avg from the anchor", with
    logits -d_avg / temperature. Returns (loss, share of anchors ranked right)."""
    davg, own, usable = _class_mean_distances(embeddings, labels)
    anchors = (own & usable).any(dim=1)
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0, 0.0
    logits = (-davg / temperature).masked_fill(~usable, float("-inf"))[anchors]
    target = own[anchors].float().argmax(dim=1)
    loss = functional.cross_entropy(logits, target)
    correct = (logits.argmax(dim=1) == target).float().mean()
    return loss, float(correct)


def proxy_softmax_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor, scale: float
) -> torch.Tensor:
    """Normalised-softmax classification over every training style (one learnt unit proxy per
    style; logits scale * cosine). Unlike a triplet loss it never saturates: it keeps pulling each
    embedding toward its style's proxy, which tightens the reference sets that d_avg averages over."""
    logits = scale * embeddings @ functional.normalize(proxies, dim=1).T
    return functional.cross_entropy(logits, labels)
