"""The GMI branch of search: pseudo-prompt, then the weighted RKME of every LoRA with a spec.

SearchEngine calls `GmiBranch.score` next to its style-distance ranking and fuses the two
(inference_service.scoring.fusion). The models are loaded by `load_gmi_models` from Settings;
open_clip/transformers are imported there, never at module import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import structlog
from PIL import Image

from db import catalog, spec_search, specs
from db.database import Database
from db.filters import Filters
from db.rows import LoraSpec
from inference_service.config import Settings
from inference_service.models.clip import ImageEncoder, TextEncoder
from inference_service.scoring.rkme import Spec, reduced_set, rkme_clip, weighted_rkme

log = structlog.get_logger(__name__)
Method = Literal["weighted", "uniform", "reduced"]


class Captioner(Protocol):
    label: str

    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...


@dataclass
class GmiModels:
    image: ImageEncoder
    text: TextEncoder
    captioner: Captioner | None = None

    @property
    def label(self) -> str:
        """Names the feature spaces: stored features from other models are not comparable."""
        return f"{self.image.label}|{self.text.label}"


def load_gmi_models(settings: Settings) -> GmiModels:
    from inference_service.models.clip import ClipEncoder, MiniLmTextEncoder

    clip = ClipEncoder(
        settings.clip_model,
        settings.clip_pretrained or None,
        config_dir=settings.clip_config_dir,
        device=settings.device,
        batch_size=settings.model_batch_size,
    )
    text: TextEncoder = clip
    if settings.text_encoder == "minilm":
        text = MiniLmTextEncoder(device=settings.device)
    elif settings.text_encoder != "clip":
        raise ValueError(f"text_encoder must be 'clip' or 'minilm', not {settings.text_encoder!r}")
    captioner: Captioner | None = None
    if settings.captioner:
        from inference_service.models.captioner import BlipCaptioner

        captioner = BlipCaptioner(
            settings.captioner,
            device=settings.device,
            num_beams=settings.caption_beams,
            max_new_tokens=settings.caption_max_tokens,
            batch_size=settings.model_batch_size,
        )
    return GmiModels(clip, text, captioner)


@dataclass(frozen=True)
class GmiResult:
    pseudo_prompt: str
    scores: dict[int, float] = field(default_factory=dict)  # lora id -> RKME score (lower is better)


@dataclass(frozen=True)
class QueryFeatures:
    """A query as the GMI branch sees it."""

    pseudo_prompt: str
    image_features: np.ndarray  # (Q, D) CLIP image features, one per query image
    text_feature: np.ndarray | None  # ê, None without a pseudo-prompt
    comparable: bool  # the stored spec features come from the running models


def score_specs(
    specs: dict[int, LoraSpec],
    query_images: np.ndarray,
    query_text: np.ndarray | None,
    gamma: float,
    method: Method = "weighted",
) -> dict[int, float]:
    """Per LoRA, the mean over query images of each image's score: every image of a multi-image
    query is a query point of its own."""
    scores = {}
    for lora_id, stored in specs.items():
        spec = Spec(
            stored.image_features.astype(np.float64),
            stored.prompt_features.astype(np.float64),
            tuple(stored.prompt_ids),
        )
        reduced = reduced_set(spec.image_features, None, 8, gamma) if method == "reduced" else None
        per_image = []
        for query in np.asarray(query_images, dtype=np.float64)[:, None, :]:
            if method == "weighted":
                per_image.append(weighted_rkme(spec, query, query_text, gamma))
            elif method == "uniform":
                per_image.append(rkme_clip(spec, query, gamma))
            else:
                assert reduced is not None
                per_image.append(reduced.score(query, gamma))
        scores[lora_id] = float(np.mean(per_image))
    return scores


def combine_prompts(prompts: Sequence[str]) -> str:
    """One pseudo-prompt for several images: their distinct captions, in order."""
    seen: list[str] = []
    for prompt in (p.strip() for p in prompts):
        if prompt and prompt.lower() not in (s.lower() for s in seen):
            seen.append(prompt)
    return "; ".join(seen)


class GmiBranch:
    def __init__(
        self,
        db: Database,
        models: GmiModels,
        gamma: float,
        method: Method = "weighted",
        *,
        exact_below: int = spec_search.EXACT_BELOW,
    ) -> None:
        self.db = db
        self.models = models
        self.gamma = gamma
        self.method = method
        self.exact_below = exact_below  # spec points below which candidates come from an exact scan

    def _describe(
        self, images: Sequence[Image.Image], prompt: str | None
    ) -> tuple[str, np.ndarray, np.ndarray | None]:
        """Query image features, pseudo-prompt (the override wins) and its text feature."""
        features = self.models.image.encode_images(list(images))
        override = (prompt or "").strip()
        if override:
            prompts = [override]
        elif self.models.captioner is not None:
            prompts = combine_prompts(self.models.captioner.caption(list(images))).split("; ")
        else:
            prompts = []
        prompts = [p for p in prompts if p]
        if not prompts:
            return "", features, None
        # ê: the mean direction of the images' pseudo-prompts, so each caption weighs the same.
        encoded = np.asarray(self.models.text.encode_texts(prompts), dtype=np.float64)
        encoded /= np.maximum(np.linalg.norm(encoded, axis=1, keepdims=True), 1e-12)
        return "; ".join(prompts), features, encoded.mean(axis=0)

    async def describe(
        self, query_images: Sequence[Image.Image], prompt_override: str | None
    ) -> QueryFeatures:
        """The query's features, once per search: candidates and scores both start from them."""
        pseudo, features, text = await asyncio.to_thread(self._describe, query_images, prompt_override)
        stored = await self.db.run(catalog.get_meta, catalog.GMI_ENCODER_KEY)
        comparable = stored is None or stored == self.models.label
        if not comparable:
            # Features from another model live in another space: rank by style distance alone.
            log.warning("gmi_encoder_mismatch", stored=stored, running=self.models.label)
        return QueryFeatures(pseudo, features, text, comparable)

    async def candidates(self, query: QueryFeatures, limit: int, filters: Filters = Filters()) -> list[int]:
        """The `limit` LoRAs whose spec points lie nearest the query images (fused search's GMI
        candidates: HNSW walks above exact_below spec points, db.spec_search)."""
        if not query.comparable:
            return []
        async with self.db.search_connection() as conn:
            nearest = await spec_search.nearest_spec_loras(
                conn, list(query.image_features), filters, limit=limit, exact_below=self.exact_below
            )
        return nearest.lora_ids

    async def score_features(
        self, query: QueryFeatures, candidate_lora_ids: Sequence[int] | None, filters: Filters = Filters()
    ) -> GmiResult:
        """Exact RKME of the candidates (every LoRA with a spec when None)."""
        if not query.comparable:
            return GmiResult(query.pseudo_prompt)
        async with self.db.search_connection() as conn:
            found = await specs.load_specs(conn, candidate_lora_ids, filters)
        scores = await asyncio.to_thread(
            score_specs, found, query.image_features, query.text_feature, self.gamma, self.method
        )
        return GmiResult(query.pseudo_prompt, scores)

    async def score(
        self,
        query_images: Sequence[Image.Image],
        prompt_override: str | None,
        candidate_lora_ids: Sequence[int] | None,
        filters: Filters = Filters(),
    ) -> GmiResult:
        query = await self.describe(query_images, prompt_override)
        return await self.score_features(query, candidate_lora_ids, filters)
