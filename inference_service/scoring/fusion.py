"""Fusion of d_avg with the (weighted) RKME score (docs/design.md 5, "Fusion").

Both normalisations centre a branch on a neutral value whatever its size (mid-ranks on 0.5,
robust z-scores on 0). A branch that scored only some of the candidates (a catalog whose specs
are partly imported) knows a member's place among those, not among all: with the others equally
likely above or below it, its expected place is the neutral value moved towards its own by the
share of candidates the branch scored, and a candidate the branch did not score gets the neutral
value. Copying the other branch's value instead ranked a sole spec holder with the best d_avg of
100 candidates 50th, its RKME rank among one being the worst possible.

The fused search scores a union of candidates that stands for the catalog: each branch's best M
LoRAs. Where only some LoRAs have a spec, the union holds a far larger share of spec holders than
the catalog, and ranks among ~200 candidates spread what are the catalog's first places over
the whole scale; normalised over the union, RKME then pulled about twice as hard as in the
exhaustive ranking the union approximates (recall@10 0.5-0.7 against it with a tenth to a third
of the catalog holding specs). Given the catalog's counts (`CatalogCounts`), mid-ranks are
placed on the catalog's scale (the candidates being each branch's head) and each branch is
shrunk by its catalog share. Robust z-scores need the catalog's median and spread, which the
union does not give, so they stay normalised over the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

import numpy as np

Normalisation = Literal["rank", "robust_z"]
NORMALISATIONS: tuple[Normalisation, ...] = ("rank", "robust_z")
# The centre of each normalised scale: what a branch that has not scored a candidate gives it.
NEUTRAL: dict[Normalisation, float] = {"rank": 0.5, "robust_z": 0.0}


class CatalogCounts(NamedTuple):
    """How many searchable LoRAs (passing the query's filters) each branch can score."""

    style: int  # with kept references: a d_avg
    spec: int  # with spec features: an RKME score
    either: int


def normalise(
    scores: Mapping[int, float], method: Normalisation, population: int | None = None
) -> dict[int, float]:
    """Each score on the branch's normalised scale. `population` (rank only): the scores are the
    best of that many, so mid-ranks are divided by it instead of by their own number."""
    if not scores:
        return {}
    keys = list(scores)
    values = np.array([scores[k] for k in keys], dtype=np.float64)
    if method == "rank":
        # Mid-ranks (rank − 0.5) / n, ties sharing their average rank: the same value always gets
        # the same score. O(n log n): the exact ranking passes every LoRA of the catalog.
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        first = np.cumsum(counts) - counts  # ranks of each distinct value start after these
        normalised = (first + (counts + 1) / 2 - 0.5)[inverse] / max(population or 0, len(values))
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
    catalog: CatalogCounts | None = None,
) -> dict[int, float]:
    """Fused score for every candidate in either branch (lower is better).

    alpha = 1 is d_avg alone, alpha = 0 is RKME alone. A branch that scored some candidates only
    is shrunk towards its neutral value by the share it scored (see above); with one branch empty,
    the other branch's normalised score is returned unchanged (the same order, on its own scale).
    `catalog`: the candidates are the heads of the branches over these counts (see above).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    keys = style_distance.keys() | rkme.keys()
    # Counts a moment old may be below what the candidates show: never fewer than those.
    counts = (
        CatalogCounts(
            max(catalog.style, len(style_distance)),
            max(catalog.spec, len(rkme)),
            max(catalog.either, len(keys)),
        )
        if catalog is not None and method == "rank"
        else CatalogCounts(len(style_distance), len(rkme), len(keys))
    )
    nd = normalise(style_distance, method, counts.style)
    nr = normalise(rkme, method, counts.spec)
    if not nd or not nr:
        return nd or nr
    neutral = NEUTRAL[method]
    d_share, r_share = counts.style / counts.either, counts.spec / counts.either

    def place(scores: dict[int, float], share: float, key: int) -> float:
        return neutral + share * (scores[key] - neutral) if key in scores else neutral

    return {key: alpha * place(nd, d_share, key) + (1.0 - alpha) * place(nr, r_share, key) for key in keys}


def rank_fused(
    style_distance: Mapping[int, float],
    rkme: Mapping[int, float],
    alpha: float,
    method: Normalisation = "rank",
    limit: int | None = None,
    catalog: CatalogCounts | None = None,
) -> list[tuple[int, float]]:
    """fuse() over the candidates given, ascending (ties by id), cut to `limit`. The exhaustive
    ranking passes every LoRA; the fused search the union of both branches' candidates, with the
    catalog's counts."""
    fused = fuse(style_distance, rkme, alpha, method, catalog)
    return sorted(fused.items(), key=lambda item: (item[1], item[0]))[:limit]
