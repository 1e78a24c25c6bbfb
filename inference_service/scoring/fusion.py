"""Fusion of d_avg with the (weighted) RKME score (docs/design.md 5, "Fusion").

A candidate lacking one branch keeps the other branch's normalised value: normalised scores of
both branches share one scale, so it still ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

Normalisation = Literal["rank", "robust_z"]
NORMALISATIONS: tuple[Normalisation, ...] = ("rank", "robust_z")


def normalise(scores: Mapping[int, float], method: Normalisation) -> dict[int, float]:
    if not scores:
        return {}
    keys = list(scores)
    values = np.array([scores[k] for k in keys], dtype=np.float64)
    if method == "rank":
        # Average ranks for ties, scaled by n: the same value always gets the same score.
        order = values.argsort(kind="stable")
        ranks = np.empty(len(values))
        ranks[order] = np.arange(1, len(values) + 1)
        for value in np.unique(values):
            tied = values == value
            ranks[tied] = ranks[tied].mean()
        normalised = ranks / len(values)
    elif method == "robust_z":
        median = np.median(values)
        mad = 1.4826 * np.median(np.abs(values - median))
        if mad <= 0:
            mad = float(values.std()) or 1.0
        normalised = (values - median) / mad
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    return {k: float(v) for k, v in zip(keys, normalised, strict=True)}


def fuse(
    style_distance: Mapping[int, float],
    rkme: Mapping[int, float],
    alpha: float,
    method: Normalisation = "rank",
) -> dict[int, float]:
    """Fused score for every candidate in either branch (lower is better).

    alpha = 1 is d_avg alone, alpha = 0 is RKME alone. With one branch empty, the other
    branch's normalised score is returned unchanged.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    nd = normalise(style_distance, method)
    nr = normalise(rkme, method)
    fused: dict[int, float] = {}
    for key in nd.keys() | nr.keys():
        if key in nd and key in nr:
            fused[key] = alpha * nd[key] + (1.0 - alpha) * nr[key]
        else:
            fused[key] = nd[key] if key in nd else nr[key]
    return fused


def rank_fused(
    style_distance: Mapping[int, float],
    rkme: Mapping[int, float],
    alpha: float,
    method: Normalisation = "rank",
    limit: int | None = None,
) -> list[tuple[int, float]]:
    """fuse() over the candidates given, ascending (ties by id), cut to `limit`. Normalisation
    is over these candidates only: the exhaustive ranking passes every LoRA, the fused search the
    union of both branches' candidates."""
    fused = fuse(style_distance, rkme, alpha, method)
    return sorted(fused.items(), key=lambda item: (item[1], item[0]))[:limit]
