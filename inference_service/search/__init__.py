"""Search: the engine, its candidate sources over pgvector and the fused two-branch path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from db.filters import Filters


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

    @property
    def filters(self) -> Filters:
        return Filters(base_model=self.base_model, allow_nsfw=self.allow_nsfw)
