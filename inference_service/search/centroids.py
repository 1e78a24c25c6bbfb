"""Exact top-k by d_avg through the centroid index: the two-stage search of docs/design.md 5.

The candidate source walks db.ranking.nearest_centroids (whose bounds are the relatives of
d_avg in inference_service/scoring/style_distance.py); db.ranking.d_avg_of scores the
survivors exactly; inference_service/scoring/two_stage.py decides what to ask next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from db import ranking
from db.database import Connection, Database
from db.encoders import Guard
from db.filters import Filters
from inference_service.scoring.two_stage import CandidateBatch, RankStats, rank_two_stage


@dataclass(frozen=True)
class TwoStageOptions:
    ef_search: int = 400  # HNSW candidate list; raised to the batch size when that is larger
    exact_below: int = 2000  # catalogs smaller than this scan every centroid exactly
    first_batch: int = 256  # centroids asked first; each further ask is `growth` times larger
    growth: int = 2
    chunk: int = 256  # candidates scored exactly per round trip


class CentroidSource:
    """Candidates by increasing distance of their centroid to the mean query image: one walk
    whatever the number of images. Its frontier bounds every LoRA not yet fetched, because for
    query images q_1..q_n with mean q and a LoRA with centroid c (docs/design.md 5, "Several
    images"): mean_i d_avg(q_i) >= mean_i |q_i - c| >= |q - c|."""

    name = "centroid"

    def __init__(
        self,
        conn: Connection,
        queries: Sequence[np.ndarray],
        filters: Filters,
        k: int,
        options: TwoStageOptions,
    ) -> None:
        self.conn, self.queries, self.filters, self.options = conn, queries, filters, options
        self.limit = max(options.first_batch, 2 * k)
        self.exact_scan: bool | None = None

    async def next_batch(self) -> CandidateBatch:
        found = await ranking.nearest_centroids(
            self.conn,
            self.queries,
            self.filters,
            limit=self.limit,
            ef_search=self.options.ef_search,
            exact_below=self.options.exact_below,
        )
        if self.exact_scan is None:  # how the first (usually only) batch was answered
            self.exact_scan = found.exact_scan
        # A short answer saw every LoRA: nothing is left unseen.
        frontier = float(found.distance[-1]) if len(found.lora_ids) >= self.limit else math.inf
        self.limit *= self.options.growth
        return CandidateBatch(found.lora_ids, found.lower, found.upper, frontier)


async def rank_d_avg(
    db: Database,
    queries: Sequence[np.ndarray],
    *,
    limit: int,
    filters: Filters = Filters(),
    options: TwoStageOptions = TwoStageOptions(),
    guard: Guard | None = None,
) -> tuple[list[tuple[int, float]], RankStats]:
    """Top-`limit` LoRAs by d_avg (mean over the query images), as db.ranking.rank_exhaustive,
    by the two-stage search; one pooled search connection carries every round trip (one
    snapshot checked by `guard` when given)."""
    async with db.search_connection(guard) as conn:
        source = CentroidSource(conn, queries, filters, limit, options)

        async def score(ids: Sequence[int]) -> dict[int, float]:
            return await ranking.d_avg_of(conn, queries, ids)

        ranked, stats = await rank_two_stage([source], score, limit, chunk=options.chunk)
        stats.details["exact_scan"] = bool(source.exact_scan)
        return ranked, stats
