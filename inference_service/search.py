"""Search: embed the query images, rank LoRAs by style distance, keep the ranking for paging."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import structlog
from PIL import Image

from db.repository import ENCODER_KEY, LoraRow, Repository, StoredSearch
from findlora_client.protocol import MAX_QUERY_IMAGES, Reason
from inference_service.batching import EncoderBatcher
from inference_service.blobs import BlobStore
from inference_service.config import Settings
from inference_service.errors import CATALOG_EMPTY, FailedPrecondition, InvalidArgument, NotFound, parse_id
from inference_service.models.style_encoder import StyleEmbedder
from inference_service.prompting import suggest_prompt
from inference_service.scoring.d_avg import Filters, TwoStageOptions, rank_d_avg
from inference_service.scoring.fusion import Normalisation, rank_fused

if TYPE_CHECKING:
    from inference_service.gmi import GmiBranch, QueryFeatures

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Transfer:
    sample_id: str
    key: str
    thumbnail: bytes
    distance: float


@dataclass(frozen=True)
class RankedLora:
    rank: int
    lora: LoraRow
    score: float
    style_distance: float
    rkme_score: float | None
    suggested_prompt: str
    transfers: list[Transfer] = field(default_factory=list)


@dataclass(frozen=True)
class SearchPage:
    search_id: uuid.UUID
    pseudo_prompt: str
    matches: list[RankedLora]
    offset: int
    total: int
    expires_at: datetime


@dataclass(frozen=True)
class SearchQuery:
    images: Sequence[Image.Image]
    top_k: int = 0
    base_model: str = ""
    allow_nsfw: bool = False
    prompt: str | None = None
    requested_by: str = ""
    exact: bool = False  # exhaustive reference ranking instead of the two-stage / union search
    deadline: float | None = None  # event-loop time after which the caller no longer waits


@dataclass(frozen=True)
class FusedRanking:
    pseudo_prompt: str
    ranking: list[dict[str, Any]]  # the stored ranking, best first
    scored: int  # LoRAs given a fused score: the candidate union, or the catalog when exact


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


async def live_search(repo: Repository, search_id: uuid.UUID) -> StoredSearch:
    """A stored search that can still be paged or voted on. An expired search stays in the table
    until the service's purge deletes it (inference_service.retention): until then it answers
    FAILED_PRECONDITION "expired", afterwards NOT_FOUND, like an id that never existed."""
    stored = await repo.get_search(search_id)
    if stored is None:
        raise NotFound("no such search: run it again", reason=Reason.SEARCH_NOT_FOUND)
    if stored.expired:
        raise FailedPrecondition("this search has expired, run it again", reason=Reason.SEARCH_EXPIRED)
    return stored


class SearchEngine:
    def __init__(
        self,
        repo: Repository,
        blobs: BlobStore,
        embedder: StyleEmbedder,
        settings: Settings,
        gmi: GmiBranch | None = None,
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.embedder = embedder
        self.settings = settings
        self.gmi = gmi
        self.batcher: EncoderBatcher[Any] | None = (
            EncoderBatcher.for_style_embedder(
                embedder,
                max_batch=settings.batch_max_size,
                max_wait=settings.batch_max_wait_ms / 1000.0,
                max_queue=settings.batch_queue_max,
            )
            if settings.dynamic_batching
            else None
        )
        self.options = TwoStageOptions(
            ef_search=settings.search_ef_search, exact_below=settings.search_exact_below
        )

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()

    async def embed(self, images: Sequence[Image.Image], deadline: float | None = None) -> np.ndarray:
        """Style embeddings of the images, batched with concurrent requests when configured."""
        if self.batcher is not None:
            return await self.batcher.embed(images, deadline)
        return await asyncio.to_thread(self.embedder.embed, list(images))

    async def rank(
        self, embeddings: np.ndarray, limit: int, filters: Filters, exact: bool
    ) -> list[tuple[int, float]]:
        queries = list(embeddings)
        if exact:
            return await self.repo.rank_exhaustive(
                queries, limit=limit, base_model=filters.base_model, allow_nsfw=filters.allow_nsfw
            )
        ranking, stats = await rank_d_avg(
            self.repo, queries, limit=limit, filters=filters, options=self.options
        )
        log.debug(
            "two_stage_search",
            candidates=stats.candidates,
            scored=stats.scored,
            round_trips=stats.batches + stats.score_calls,
            exact_scan=stats.details.get("exact_scan"),
        )
        return ranking

    def _top_k(self, requested: int) -> int:
        if requested < 0 or requested > self.settings.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.settings.max_top_k}")
        return requested or self.settings.default_top_k

    async def _check_catalog(self) -> None:
        if not await self.repo.has_searchable():
            raise FailedPrecondition(CATALOG_EMPTY, reason=Reason.CATALOG_EMPTY)
        stored = await self.repo.get_meta(ENCODER_KEY)
        if stored is not None and stored != self.embedder.label:
            raise FailedPrecondition(
                f"the catalog was embedded with style encoder {stored} but the service runs "
                f"{self.embedder.label}: run findlora catalog reembed",
                reason=Reason.CATALOG_STALE,
            )

    async def search(self, query: SearchQuery) -> SearchPage:
        if not 1 <= len(query.images) <= MAX_QUERY_IMAGES:
            raise InvalidArgument(f"send 1 to {MAX_QUERY_IMAGES} images of one style")
        top_k = self._top_k(query.top_k)
        await self._check_catalog()
        embeddings = await self.embed(query.images, query.deadline)
        limit = max(self.settings.stored_ranking_size, top_k)
        if self.gmi is None:
            ranking = await self.rank(
                embeddings,
                limit,
                Filters(base_model=query.base_model, allow_nsfw=query.allow_nsfw),
                query.exact,
            )
            pseudo_prompt = (query.prompt or "").strip()
            stored: list[dict[str, Any]] = [
                {"lora_id": lora_id, "style_distance": d, "score": d} for lora_id, d in ranking
            ]
        else:
            fused = await self.fused_ranking(query, embeddings, limit)
            pseudo_prompt, stored = fused.pseudo_prompt, fused.ranking
        centre = embeddings.mean(axis=0)
        search_id, expires_at = await self.repo.save_search(
            query=centre,
            pseudo_prompt=pseudo_prompt,
            ranking=stored,
            filters={"base_model": query.base_model, "allow_nsfw": query.allow_nsfw, "exact": query.exact},
            requested_by=query.requested_by,
            ttl_hours=self.settings.search_ttl_hours,
        )
        matches = await self._materialise(stored, 0, top_k, centre, pseudo_prompt, query.allow_nsfw)
        return SearchPage(search_id, pseudo_prompt, matches, 0, len(stored), expires_at)

    async def fused_ranking(self, query: SearchQuery, embeddings: np.ndarray, limit: int) -> FusedRanking:
        """Both branches fused (DESIGN.md 5, "Fusion"): over the union of each branch's
        candidates (the default), or over every searchable LoRA when the query asks for the
        exact reference ranking."""
        if query.exact:
            return await self._fused_exhaustive(query, embeddings, limit)
        return await self._fused_union(query, embeddings, limit)

    async def _fused_exhaustive(self, query: SearchQuery, embeddings: np.ndarray, limit: int) -> FusedRanking:
        """Both branches over every searchable LoRA: the reference the fused search is measured by."""
        assert self.gmi is not None
        everything = await self.repo.count_searchable()
        distances, gmi = await asyncio.gather(
            self.repo.rank_exhaustive(
                list(embeddings),
                limit=max(everything, 1),
                base_model=query.base_model,
                allow_nsfw=query.allow_nsfw,
            ),
            self.gmi.score(
                query.images, query.prompt, None, base_model=query.base_model, allow_nsfw=query.allow_nsfw
            ),
        )
        return self._fused(gmi.pseudo_prompt, dict(distances), gmi.scores, limit)

    async def _fused_union(self, query: SearchQuery, embeddings: np.ndarray, limit: int) -> FusedRanking:
        """Fused search (DESIGN.md 5): the union of the exact d_avg top-M (two-stage search) and
        the M LoRAs with the nearest spec points, each member then scored exactly in both
        branches and fused over the union. M = max(fusion_candidates, limit), so either branch
        alone can fill the stored ranking."""
        assert self.gmi is not None
        gmi = self.gmi
        m = max(self.settings.fusion_candidates, limit)
        filters = Filters(base_model=query.base_model, allow_nsfw=query.allow_nsfw)

        async def gmi_candidates() -> tuple[QueryFeatures, list[int]]:
            features = await gmi.describe(query.images, query.prompt)
            return features, await gmi.candidates(
                features, m, base_model=query.base_model, allow_nsfw=query.allow_nsfw
            )

        (style, _), (features, nearest_spec) = await asyncio.gather(
            rank_d_avg(self.repo, list(embeddings), limit=m, filters=filters, options=self.options),
            gmi_candidates(),
        )
        d_avg = dict(style)
        union = sorted(d_avg.keys() | set(nearest_spec))
        missing = [i for i in union if i not in d_avg]
        extra, rkme = await asyncio.gather(
            self._d_avg_of(embeddings, missing),
            gmi.score_features(features, union, base_model=query.base_model, allow_nsfw=query.allow_nsfw),
        )
        d_avg |= extra
        log.debug("fused_search", per_branch=m, style=len(style), gmi=len(nearest_spec), scored=len(union))
        return self._fused(rkme.pseudo_prompt, d_avg, rkme.scores, limit)

    async def _d_avg_of(self, embeddings: np.ndarray, lora_ids: Sequence[int]) -> dict[int, float]:
        """Exact d_avg of GMI candidates the style search did not return (none without references)."""
        if not lora_ids:
            return {}
        async with self.repo.search_connection() as conn:
            return await self.repo.d_avg_of(conn, list(embeddings), lora_ids)

    def _fused(
        self, pseudo_prompt: str, d_avg: dict[int, float], rkme: dict[int, float], limit: int
    ) -> FusedRanking:
        scored = len(d_avg.keys() | rkme.keys())
        if not rkme:  # no candidate has a spec: the style distance alone, on its own scale
            ranked = sorted(d_avg.items(), key=lambda item: (item[1], item[0]))[:limit]
            return FusedRanking(
                pseudo_prompt,
                [{"lora_id": i, "style_distance": d, "score": d} for i, d in ranked],
                scored,
            )
        fused = rank_fused(
            d_avg,
            rkme,
            self.settings.fusion_alpha,
            cast(Normalisation, self.settings.fusion_normalisation),
            limit,
        )
        # A LoRA without references has no d_avg: JSON null here, NaN on the wire.
        return FusedRanking(
            pseudo_prompt,
            [
                {"lora_id": i, "style_distance": d_avg.get(i), "rkme_score": rkme.get(i), "score": score}
                for i, score in fused
            ],
            scored,
        )

    async def page(self, search_id: str, offset: int, limit: int, allow_nsfw: bool) -> SearchPage:
        parsed = parse_id(search_id, "search id")
        if offset < 0:
            raise InvalidArgument("offset must be >= 0")
        limit = self._top_k(limit)
        stored = await live_search(self.repo, parsed)
        matches = await self._materialise(
            stored.ranking, offset, limit, stored.query_embedding, stored.pseudo_prompt, allow_nsfw
        )
        return SearchPage(
            parsed, stored.pseudo_prompt, matches, offset, len(stored.ranking), stored.expires_at
        )

    async def _materialise(
        self,
        ranking: list[dict[str, Any]],
        offset: int,
        limit: int,
        query: np.ndarray,
        pseudo_prompt: str,
        allow_nsfw: bool,
    ) -> list[RankedLora]:
        window = ranking[offset : offset + limit]
        ids = [int(item["lora_id"]) for item in window]
        loras = await self.repo.loras_by_id(ids)
        nearest = await self.repo.nearest_references(query, ids, self.settings.transfers_per_match)
        matches = []
        for position, item in enumerate(window, start=offset + 1):
            lora = loras.get(int(item["lora_id"]))
            # A LoRA hidden or taken down after the search never shows again.
            if lora is None or lora.status != "active" or (lora.nsfw and not allow_nsfw):
                continue
            transfers = [
                Transfer(ref.sample_id, ref.blob_key, self.blobs.get(ref.thumb_key), ref.distance)
                for ref in nearest.get(lora.id, [])
            ]
            matches.append(
                RankedLora(
                    rank=position,
                    lora=lora,
                    score=float(item["score"]),
                    style_distance=_float_or_nan(item.get("style_distance")),
                    rkme_score=None if item.get("rkme_score") is None else float(item["rkme_score"]),
                    suggested_prompt=suggest_prompt(
                        pseudo_prompt, lora.trigger_words, lora.slug, lora.base_model
                    ),
                    transfers=transfers,
                )
            )
        return matches
