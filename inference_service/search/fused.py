"""The fused search (docs/design.md 5, "Fusion"): the style-distance and GMI branches scored on the
union of their candidates (or on every searchable LoRA for the exact reference), then fused."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from db import ranking, specs
from db.database import Database
from db.encoders import Guard
from db.filters import Filters
from inference_service.concurrency import all_or_cancel
from inference_service.config import Settings
from inference_service.scoring.fusion import CatalogCounts, rank_fused
from inference_service.search import SearchQuery
from inference_service.search.centroids import TwoStageOptions, rank_d_avg

if TYPE_CHECKING:
    from inference_service.gmi import GmiBranch, QueryFeatures
    from inference_service.search.memory_index import CentroidIndex

log = structlog.get_logger(__name__)

# How long the catalog's branch counts serve the union's fusion: they move with registrations,
# not with searches, and counting probes every LoRA of the catalog.
COUNTS_TTL_S = 60.0
# Filter groups whose counts are kept (the least recently used goes first): every unknown base
# model a client sends is a group of its own, so the cache must not grow with them.
COUNTS_CACHED = 64


@dataclass(frozen=True)
class FusedRanking:
    pseudo_prompt: str
    ranking: list[dict[str, Any]]  # the stored ranking, best first
    scored: int  # LoRAs given a fused score: the candidate union, or the catalog when exact


class FusedSearch:
    def __init__(
        self,
        db: Database,
        gmi: GmiBranch,
        settings: Settings,
        options: TwoStageOptions,
        centroid_index: CentroidIndex | None = None,
    ) -> None:
        self.db, self.gmi, self.settings, self.options = db, gmi, settings, options
        self.centroid_index = centroid_index
        # filter group -> (when, counts), least recently used first
        self._counts: OrderedDict[tuple[Any, ...], tuple[float, CatalogCounts]] = OrderedDict()

    async def rank(
        self, query: SearchQuery, embeddings: np.ndarray, limit: int, guard: Guard | None = None
    ) -> FusedRanking:
        """Both branches fused: over the union of each branch's candidates (the default), or
        over every searchable LoRA when the query asks for the exact reference ranking. `guard`
        checks the style encoder in each snapshot that reads style embeddings."""
        if query.exact:
            return await self._exhaustive(query, embeddings, limit, guard)
        return await self._union(query, embeddings, limit, guard)

    async def _exhaustive(
        self, query: SearchQuery, embeddings: np.ndarray, limit: int, guard: Guard | None
    ) -> FusedRanking:
        """Both branches over every searchable LoRA: the reference the fused search is measured by."""

        async def style() -> list[tuple[int, float]]:
            async with self.db.search_connection(guard) as conn:
                return await ranking.rank_exhaustive(conn, list(embeddings), query.filters, limit=None)

        gmi_scores = self.gmi.score(query.images, query.prompt, None, query.filters)
        distances, gmi = await all_or_cancel(style(), gmi_scores)
        # Normalising every LoRA's scores takes a while on a large catalog: off the event loop.
        return await asyncio.to_thread(self._fused, gmi.pseudo_prompt, dict(distances), gmi.scores, limit)

    async def _union(
        self, query: SearchQuery, embeddings: np.ndarray, limit: int, guard: Guard | None
    ) -> FusedRanking:
        """The union of the exact d_avg top-M (two-stage search) and the M LoRAs with the nearest
        spec points, each member then scored exactly in both branches and fused over the union.
        M = max(fusion_candidates, limit), so either branch alone can fill the stored ranking."""
        gmi, filters = self.gmi, query.filters
        m = max(self.settings.fusion_candidates, limit)

        async def gmi_candidates() -> tuple[QueryFeatures, list[int]]:
            features = await gmi.describe(query.images, query.prompt)
            return features, await gmi.candidates(features, m, filters)

        (style, _), (features, nearest_spec), counts = await all_or_cancel(
            rank_d_avg(
                self.db,
                list(embeddings),
                limit=m,
                filters=filters,
                options=self.options,
                guard=guard,
                index=self.centroid_index,
            ),
            gmi_candidates(),
            self._catalog_counts(filters),
        )
        d_avg = dict(style)
        union = sorted(d_avg.keys() | set(nearest_spec))
        missing = [i for i in union if i not in d_avg]
        extra, rkme = await all_or_cancel(
            self._d_avg_of(embeddings, missing, guard), gmi.score_features(features, union, filters)
        )
        d_avg |= extra
        log.debug("fused_search", per_branch=m, style=len(style), gmi=len(nearest_spec), scored=len(union))
        return self._fused(rkme.pseudo_prompt, d_avg, rkme.scores, limit, counts)

    async def _catalog_counts(self, filters: Filters) -> CatalogCounts | None:
        """The LoRAs each branch can score under these filters, at most COUNTS_TTL_S old; None
        where fusion cannot use them (robust z-scores), so the count query is not run."""
        if self.settings.fusion_normalisation != "rank":
            return None
        params = filters.params()  # spellings of one base model share their group
        key = (tuple(params["bases"]), params["other_bases"], params["nsfw"])
        cached = self._counts.get(key)
        if cached is not None and time.monotonic() - cached[0] < COUNTS_TTL_S:
            self._counts.move_to_end(key)
            return cached[1]
        async with self.db.search_connection() as conn:
            counts = CatalogCounts(*await specs.branch_counts(conn, filters))
        self._counts[key] = (time.monotonic(), counts)
        self._counts.move_to_end(key)
        while len(self._counts) > COUNTS_CACHED:
            self._counts.popitem(last=False)
        return counts

    async def _d_avg_of(
        self, embeddings: np.ndarray, lora_ids: Sequence[int], guard: Guard | None
    ) -> dict[int, float]:
        """Exact d_avg of GMI candidates the style search did not return (none without references)."""
        if not lora_ids:
            return {}
        async with self.db.search_connection(guard) as conn:
            return await ranking.d_avg_of(conn, list(embeddings), lora_ids)

    def _fused(
        self,
        pseudo_prompt: str,
        d_avg: dict[int, float],
        rkme: dict[int, float],
        limit: int,
        catalog: CatalogCounts | None = None,
    ) -> FusedRanking:
        scored = len(d_avg.keys() | rkme.keys())
        if not rkme:  # no candidate has a spec: the style distance alone, on its own scale
            ranked = sorted(d_avg.items(), key=lambda item: (item[1], item[0]))[:limit]
            return FusedRanking(
                pseudo_prompt, [{"lora_id": i, "style_distance": d, "score": d} for i, d in ranked], scored
            )
        settings = self.settings
        fused = rank_fused(d_avg, rkme, settings.fusion_alpha, settings.fusion_normalisation, limit, catalog)
        # A LoRA without references has no d_avg: JSON null here, NaN on the wire.
        return FusedRanking(
            pseudo_prompt,
            [
                {"lora_id": i, "style_distance": d_avg.get(i), "rkme_score": rkme.get(i), "score": score}
                for i, score in fused
            ],
            scored,
        )
