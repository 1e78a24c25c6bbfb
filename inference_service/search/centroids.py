"""Exact top-k by d_avg through the centroid index: the two-stage search of docs/design.md 5.

The candidate source is the service's in-memory centroid index when it is given and matches the
search's snapshot (search/memory_index.py), else it walks db.ranking.nearest_centroids (whose
bounds are the relatives of d_avg in inference_service/scoring/style_distance.py);
db.ranking.d_avg_of scores the survivors exactly; inference_service/scoring/two_stage.py decides
what to ask next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from db import ranking
from db.database import Connection, Database
from db.encoders import Guard
from db.filters import Filters
from inference_service.scoring.two_stage import CandidateBatch, ExactScorer, RankStats, rank_two_stage
from inference_service.search.options import TwoStageOptions as TwoStageOptions  # its import path too

if TYPE_CHECKING:
    from inference_service.search.memory_index import CentroidIndex
    from inference_service.search.memory_view import CentroidView, ExactScan, HnswWalk


class CentroidSource:
    """Candidates by increasing centroid distance: one walk around the mean query image, or one
    walk per image. Either frontier bounds every LoRA not yet fetched (docs/design.md 5, "Several
    images"): around the mean q, mean_i d_avg(q_i) >= mean_i |q_i - c| >= |q - c|; per image,
    walk i's last distance bounds |q_i - c| for every LoRA it has not reached, and the mean of
    those distances bounds d_avg for a LoRA no walk has reached."""

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
        self.starts: list[np.ndarray | None] = (
            list(queries) if options.walk == "per_image" and len(queries) > 1 else [None]
        )

    async def next_batch(self) -> CandidateBatch:
        parts = []
        frontier = 0.0
        for start in self.starts:
            found = await ranking.nearest_centroids(
                self.conn,
                self.queries,
                self.filters,
                limit=self.limit,
                ef_search=self.options.ef_search,
                exact_below=self.options.exact_below,
                walk_from=start,
            )
            if self.exact_scan is None:  # how the first (usually only) batch was answered
                self.exact_scan = found.exact_scan
            parts.append(found)
            if len(found.lora_ids) < self.limit:  # this walk saw every LoRA: nothing is unseen
                frontier = math.inf
                break
            frontier += float(found.distance[-1]) / len(self.starts)
        self.limit *= self.options.growth
        return CandidateBatch(
            np.concatenate([p.lora_ids for p in parts]),
            np.concatenate([p.lower for p in parts]),
            np.concatenate([p.upper for p in parts]),
            frontier,
        )


async def rank_d_avg(
    db: Database,
    queries: Sequence[np.ndarray],
    *,
    limit: int,
    filters: Filters = Filters(),
    options: TwoStageOptions = TwoStageOptions(),
    guard: Guard | None = None,
    index: CentroidIndex | None = None,
) -> tuple[list[tuple[int, float]], RankStats]:
    """Top-`limit` LoRAs by d_avg (mean over the query images), as db.ranking.rank_exhaustive,
    by the two-stage search; one pooled search connection carries every round trip (one
    snapshot checked by `guard` when given). With `index`, candidates come from its view of
    that snapshot, which must then be one snapshot even without a guard; a view that is current
    and scores in memory needs only the one statement that says so (CentroidIndex.current)."""
    current = None if index is None else await index.current(guard)
    if current is not None:
        return await rank_in_memory(current, queries, limit, filters, options)
    async with db.search_connection(guard, snapshot=index is not None) as conn:
        view = None if index is None else await index.sync(conn)
        if view is None or view.references is None:  # PostgreSQL scores, in this snapshot
            source: CentroidSource | ExactScan | HnswWalk = (
                CentroidSource(conn, queries, filters, limit, options)
                if view is None
                else view.source(queries, filters, limit, options)
            )

            async def score(ids: Sequence[int]) -> dict[int, float]:
                return await ranking.d_avg_of(conn, queries, ids)

            walked = "database" if view is None else "memory"
            return await _rank(source, score, limit, options, walked, "database")
    # The view is that snapshot's and holds what scoring reads: the connection can go back first.
    return await rank_in_memory(view, queries, limit, filters, options)


async def rank_in_memory(
    view: CentroidView, queries: Sequence[np.ndarray], limit: int, filters: Filters, options: TwoStageOptions
) -> tuple[list[tuple[int, float]], RankStats]:
    """Candidates from the view, scored exactly from the view's own references."""
    assert view.references is not None
    source, references = view.source(queries, filters, limit, options), view.references
    found = source.row_of
    stack = np.stack(ranking.vectors(queries))

    async def score(ids: Sequence[int]) -> dict[int, float]:
        d = references.d_avg(np.asarray([found[i] for i in ids], dtype=np.int64), stack)
        return dict(zip((int(i) for i in ids), d.tolist(), strict=True))

    return await _rank(source, score, limit, options, "memory", "memory")


async def _rank(
    source: CentroidSource | ExactScan | HnswWalk,
    score: ExactScorer,
    limit: int,
    options: TwoStageOptions,
    centroid_index: str,
    scoring: str,
) -> tuple[list[tuple[int, float]], RankStats]:
    ranked, stats = await rank_two_stage(
        [source], score, limit, chunk=options.chunk, first_chunk=options.first_chunk
    )
    stats.details["exact_scan"] = bool(source.exact_scan)
    stats.details["centroid_index"] = centroid_index
    stats.details["scoring"] = scoring
    return ranked, stats
