"""Search: embed the query images, rank LoRAs by style distance, keep the ranking for paging.

One request goes down once: the engine (here) -> the two-stage search (search.centroids) or the
fused search (search.fused) -> db.ranking / pure scoring -> back here to store and materialise."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from PIL import Image

from db import catalog, ranking, searches
from db.database import Database
from db.encoders import EncoderChanged, Guard, label_guard
from db.filters import Filters
from db.rows import LoraRow, StoredSearch
from findlora_client.protocol import MAX_QUERY_IMAGES, Reason
from inference_service.batching import StyleBatcher
from inference_service.blobs import BlobStore
from inference_service.config import Settings
from inference_service.errors import CATALOG_EMPTY, FailedPrecondition, InvalidArgument, NotFound, parse_id
from inference_service.models.active import ActiveEncoder, UnknownEncoder, as_active
from inference_service.models.style_encoder import StyleEmbedder
from inference_service.prompting import suggest_prompt
from inference_service.search import SearchQuery
from inference_service.search.centroids import TwoStageOptions, rank_d_avg
from inference_service.search.fused import FusedRanking, FusedSearch
from inference_service.search.memory_index import CentroidIndex
from inference_service.timing import stage

if TYPE_CHECKING:
    from inference_service.gmi import GmiBranch

log = structlog.get_logger(__name__)
SEARCH_OUTDATED = "this search was made with an earlier style encoder; search again"
# A search re-embeds its query when an activation lands between embedding and ranking; activations
# are minutes apart, so a third change within one search means something is wrong.
_ENCODER_ATTEMPTS = 3


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


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


async def live_search(db: Database, search_id: uuid.UUID) -> StoredSearch:
    """A stored search that can still be paged or voted on. An expired search stays in the table
    until the service's purge deletes it (inference_service.retention): until then it answers
    FAILED_PRECONDITION "expired", afterwards NOT_FOUND, like an id that never existed."""
    stored = await db.run(searches.get_search, search_id)
    if stored is None:
        raise NotFound("no such search: run it again", reason=Reason.SEARCH_NOT_FOUND)
    if stored.expired:
        raise FailedPrecondition("this search has expired, run it again", reason=Reason.SEARCH_EXPIRED)
    return stored


class SearchEngine:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        embedder: StyleEmbedder | ActiveEncoder,
        settings: Settings,
        gmi: GmiBranch | None = None,
        centroid_index: CentroidIndex | None = None,
    ) -> None:
        self.db = db
        self.centroid_index = centroid_index  # None: candidates from pgvector's walk
        self.blobs = blobs
        self.encoders = as_active(embedder, db, blobs)
        self.settings = settings
        self.batcher: StyleBatcher | None = (
            StyleBatcher(
                max_batch=settings.batch_max_size,
                max_wait=settings.batch_max_wait_ms / 1000.0,
                max_queue=settings.batch_queue_max,
            )
            if settings.dynamic_batching
            else None
        )
        self.options = TwoStageOptions(
            ef_search=settings.search_ef_search,
            exact_below=settings.search_exact_below,
            memory_ef_search=settings.search_memory_ef_search,
        )
        self.fused = None if gmi is None else FusedSearch(db, gmi, settings, self.options, centroid_index)

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()

    async def embed(
        self,
        images: Sequence[Image.Image],
        deadline: float | None = None,
        *,
        embedder: StyleEmbedder | None = None,
    ) -> np.ndarray:
        """Style embeddings of the images (by `embedder`, else the encoder loaded last), batched
        with concurrent requests when configured."""
        embedder = embedder or self.encoders.loaded
        if self.batcher is not None:
            return await self.batcher.embed(embedder, images, deadline)
        return await asyncio.to_thread(embedder.embed, list(images))

    async def rank(
        self, embeddings: np.ndarray, limit: int, filters: Filters, exact: bool, guard: Guard | None = None
    ) -> list[tuple[int, float]]:
        """Top LoRAs by d_avg; `guard` (db.encoders.label_guard) checks the encoder in the
        snapshot that ranks."""
        queries = list(embeddings)
        if exact:
            with stage("exhaustive"):
                async with self.db.search_connection(guard) as conn:
                    return await ranking.rank_exhaustive(conn, queries, filters, limit=limit)
        ranked, stats = await rank_d_avg(
            self.db,
            queries,
            limit=limit,
            filters=filters,
            options=self.options,
            guard=guard,
            index=self.centroid_index,
        )
        log.debug(
            "two_stage_search",
            candidates=stats.candidates,
            scored=stats.scored,
            round_trips=stats.batches + stats.score_calls,
            exact_scan=stats.details.get("exact_scan"),
            centroid_index=stats.details.get("centroid_index"),
        )
        return ranked

    def _top_k(self, requested: int) -> int:
        if requested < 0 or requested > self.settings.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.settings.max_top_k}")
        return requested or self.settings.default_top_k

    async def _check_catalog(self) -> StyleEmbedder:
        """The encoder of the catalog's active label (loaded on a switch), or why none can search."""
        async with self.db.connection() as conn:
            if not await catalog.has_searchable(conn):
                raise FailedPrecondition(CATALOG_EMPTY, reason=Reason.CATALOG_EMPTY)
            label = await self.encoders.active_label(conn)
        try:
            return await self.encoders.get(label)
        except UnknownEncoder as exc:
            raise FailedPrecondition(exc.message, reason=Reason.CATALOG_STALE) from None

    async def search(self, query: SearchQuery) -> SearchPage:
        """Embed with the active encoder, rank in a snapshot that still has that encoder active,
        or, when an activation committed in between, embed again with the new one."""
        if not 1 <= len(query.images) <= MAX_QUERY_IMAGES:
            raise InvalidArgument(f"send 1 to {MAX_QUERY_IMAGES} images of one style")
        top_k = self._top_k(query.top_k)
        for _ in range(_ENCODER_ATTEMPTS):
            with stage("check"):
                embedder = await self._check_catalog()
            with stage("encode"):  # with the wait for a batch when batching is on
                embeddings = await self.embed(query.images, query.deadline, embedder=embedder)
            try:
                return await self._search_with(query, embeddings, embedder.label, top_k)
            except EncoderChanged as exc:
                log.info("search_encoder_changed", embedded=exc.expected, active=exc.active)
        raise FailedPrecondition("the style encoder is being switched; search again in a moment")

    async def _search_with(
        self, query: SearchQuery, embeddings: np.ndarray, label: str, top_k: int
    ) -> SearchPage:
        """Rank, store and materialise a query embedded by encoder `label` (EncoderChanged when
        that is no longer the active one)."""
        guard = label_guard(label)
        limit = max(self.settings.stored_ranking_size, top_k)
        if self.fused is None:
            ranked = await self.rank(embeddings, limit, query.filters, query.exact, guard)
            pseudo_prompt = (query.prompt or "").strip()
            stored: list[dict[str, Any]] = [
                {"lora_id": lora_id, "style_distance": d, "score": d} for lora_id, d in ranked
            ]
        else:
            fused = await self.fused_ranking(query, embeddings, limit, guard)
            pseudo_prompt, stored = fused.pseudo_prompt, fused.ranking
        centre = embeddings.mean(axis=0)
        with stage("store"):
            search_id, expires_at = await self.db.run(
                searches.save_search,
                query=centre,
                pseudo_prompt=pseudo_prompt,
                ranking=stored,
                filters={
                    "base_model": query.base_model,
                    "allow_nsfw": query.allow_nsfw,
                    "exact": query.exact,
                },
                requested_by=query.requested_by,
                ttl_hours=self.settings.search_ttl_hours,
                encoder=label,
            )
        matches = await self._materialise(stored, 0, top_k, centre, pseudo_prompt, query.allow_nsfw, guard)
        return SearchPage(search_id, pseudo_prompt, matches, 0, len(stored), expires_at)

    async def fused_ranking(
        self, query: SearchQuery, embeddings: np.ndarray, limit: int, guard: Guard | None = None
    ) -> FusedRanking:
        """Both branches fused (inference_service.search.fused)."""
        assert self.fused is not None
        return await self.fused.rank(query, embeddings, limit, guard)

    async def page(self, search_id: str, offset: int, limit: int, allow_nsfw: bool) -> SearchPage:
        parsed = parse_id(search_id, "search id")
        if offset < 0:
            raise InvalidArgument("offset must be >= 0")
        limit = self._top_k(limit)
        stored = await live_search(self.db, parsed)
        # The query embedding picks each match's nearest references: only comparable with
        # references of the encoder it was made with.
        guard = None if stored.encoder is None else label_guard(stored.encoder)
        try:
            matches = await self._materialise(
                stored.ranking, offset, limit, stored.query_embedding, stored.pseudo_prompt, allow_nsfw, guard
            )
        except EncoderChanged:
            raise FailedPrecondition(SEARCH_OUTDATED, reason=Reason.SEARCH_OUTDATED) from None
        return SearchPage(
            parsed, stored.pseudo_prompt, matches, offset, len(stored.ranking), stored.expires_at
        )

    async def _materialise(
        self,
        stored: list[dict[str, Any]],
        offset: int,
        limit: int,
        query: np.ndarray,
        pseudo_prompt: str,
        allow_nsfw: bool,
        guard: Guard | None = None,
    ) -> list[RankedLora]:
        window = stored[offset : offset + limit]
        ids = [int(item["lora_id"]) for item in window]
        with stage("references"):  # the page's catalog rows and each match's nearest references
            async with self.db.search_connection(guard) as conn:
                loras = await catalog.loras_by_id(conn, ids)
                nearest = await ranking.nearest_references(
                    conn, query, ids, self.settings.transfers_per_match
                )
        shown = [
            (position, item, lora)
            for position, item in enumerate(window, start=offset + 1)
            # A LoRA hidden or taken down after the search never shows again.
            if (lora := loras.get(int(item["lora_id"]))) is not None
            and lora.status == "active"
            and (allow_nsfw or not lora.nsfw)
        ]
        keys = [ref.thumb_key for _, _, lora in shown for ref in nearest.get(lora.id, [])]
        with stage("thumbnails"):
            thumbnails = iter(await asyncio.to_thread(self.blobs.get_or_empty, keys))
        matches = []
        for position, item, lora in shown:
            transfers = [
                Transfer(ref.sample_id, ref.blob_key, next(thumbnails), ref.distance)
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
