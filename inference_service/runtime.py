"""What a process of the service side holds: settings, database, blob store and style encoder."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from db.database import Database
from db.migrate import ready_url
from inference_service.blobs import BlobStore
from inference_service.config import Settings
from inference_service.models.active import ActiveEncoder
from inference_service.models.style_encoder import StyleEmbedder, resolve_encoder

if TYPE_CHECKING:
    from inference_service.gmi import GmiModels


@dataclass
class Runtime:
    settings: Settings
    url: str
    db: Database
    blobs: BlobStore
    embedder: StyleEmbedder  # the configured encoder (FINDLORA_STYLE_ENCODER or the shipped one)
    gmi: GmiModels | None = None  # CLIP (+ captioner) when settings.gmi is on
    # The encoder the catalog's label names (an activation switches it): what embeds.
    encoders: ActiveEncoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoders = ActiveEncoder(self.db, self.blobs, self.embedder)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def migrated_url(settings: Settings) -> str:
    """The database URL at the newest schema (`db.migrate.ready_url`: the embedded one migrated,
    an external one only checked)."""
    return await asyncio.to_thread(ready_url, settings.database_url, settings.pg_dir)


async def open_runtime(settings: Settings) -> Runtime:
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    url = await migrated_url(settings)
    db = await Database.open(
        url, max_size=settings.db_pool_max, search_timeout_ms=settings.search_statement_timeout_ms
    )
    model, label = resolve_encoder(settings.style_encoder, settings.device)
    gmi = None
    if settings.gmi:
        from inference_service.gmi import load_gmi_models

        gmi = await asyncio.to_thread(load_gmi_models, settings)
    return Runtime(
        settings, url, db, BlobStore(settings.blob_dir), StyleEmbedder(model, label, settings.device), gmi
    )
