"""Style-distance ranking: exact d_avg and its sub-linear two-stage search (DESIGN.md 5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import AsyncConnection

from db.repository import Repository
from inference_service.scoring.two_stage import CandidateBatch, RankStats, rank_two_stage


@dataclass(frozen=True)
class TwoStageOptions:
    ef_search: int = 200  # HNSW candidate list; raised to the batch size when that is larger
    exact_below: int = 2000  # catalogs smaller than this scan every centroid exactly
    first_batch: int = 128  # centroids asked first; each further ask is `growth` times larger
    growth: int = 2
    chunk: int = 256  # candidates scored exactly per round trip


@dataclass(frozen=True)
class Filters:
    base_model: str = ""
    allow_nsfw: bool = False


class CentroidSource:
    """Candidates by increasing ‖mean(q) − c_m‖ from the centroid index. The per-candidate lower
    bound is mean_i ‖q_i − c_m‖ (≥ the scan key by convexity) and the upper bound the smaller
    of the triangle and d_rms bounds; the frontier is the last scan key."""

    name = "centroid"

    def __init__(
        self,
        repo: Repository,
        conn: AsyncConnection[Any],
        queries: Sequence[np.ndarray],
        filters: Filters,
        k: int,
        options: TwoStageOptions,
    ) -> None:
        self.repo, self.conn, self.queries, self.filters, self.options = repo, conn, queries, filters, options
        self.limit = max(options.first_batch, 2 * k)
        self.exact_scan: bool | None = None

    async def next_batch(self) -> CandidateBatch:
        found = await self.repo.nearest_centroids(
            self.conn,
            self.queries,
            limit=self.limit,
            base_model=self.filters.base_model,
            allow_nsfw=self.filters.allow_nsfw,
            ef_search=self.options.ef_search,
            exact_below=self.options.exact_below,
        )
        if self.exact_scan is None:  # how the first (usually only) batch was answered
            self.exact_scan = found.exact_scan
        exhausted = len(found.lora_ids) < self.limit
        frontier = math.inf if exhausted else float(found.distance[-1])
        self.limit *= self.options.growth
        return CandidateBatch(found.lora_ids, found.lower, found.upper, frontier)


async def rank_d_avg(
    repo: Repository,
    queries: Sequence[np.ndarray],
    *,
    limit: int,
    filters: Filters = Filters(),
    options: TwoStageOptions = TwoStageOptions(),
) -> tuple[list[tuple[int, float]], RankStats]:
    """Top-`limit` LoRAs by d_avg (mean over the query images), as rank_exhaustive, by the
    two-stage search; one pooled connection carries every round trip."""
    async with repo.connection() as conn:
        source = CentroidSource(repo, conn, queries, filters, limit, options)

        async def score(ids: Sequence[int]) -> dict[int, float]:
            return await repo.d_avg_of(conn, queries, ids)

        ranked, stats = await rank_two_stage([source], score, limit, chunk=options.chunk)
        stats.details["exact_scan"] = bool(source.exact_scan)
        return ranked, stats
