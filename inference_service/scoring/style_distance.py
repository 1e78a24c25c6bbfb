"""d_avg (Eq. 3) and its centroid relatives (docs/design.md 5), numpy.

The service computes the same d_avg in SQL (db/ranking.py, d_avg_sql) and bounds it from the
centroids in inference_service/search/centroids.py: change one, check the other two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Aggregation = Literal["d_avg", "d_rms", "centroid"]


def _pairwise(queries: NDArray[np.floating], references: NDArray[np.floating]) -> NDArray[np.float64]:
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)
    squared = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * q @ r.T
    return np.asarray(np.sqrt(np.maximum(squared, 0.0)), dtype=np.float64)


def style_distances(
    queries: NDArray[np.floating],
    references: Sequence[NDArray[np.floating]],
    aggregation: Aggregation = "d_avg",
) -> NDArray[np.float64]:
    """queries (Q, D); references[m] (S_m, D) for each LoRA m -> distances (Q, M), lower is closer."""
    out = np.zeros((len(queries), len(references)), dtype=np.float64)
    for m, refs in enumerate(references):
        refs = np.asarray(refs, dtype=np.float64)
        if not len(refs):
            out[:, m] = np.inf  # a LoRA without usable references can never match
            continue
        if aggregation == "d_avg":
            out[:, m] = _pairwise(queries, refs).mean(axis=1)
            continue
        centroid = refs.mean(axis=0, keepdims=True)
        to_centroid = _pairwise(queries, centroid)[:, 0]
        if aggregation == "centroid":
            out[:, m] = to_centroid
        else:
            spread = float(((refs - centroid) ** 2).sum(axis=1).mean())
            out[:, m] = np.sqrt(to_centroid**2 + spread)
    return out
