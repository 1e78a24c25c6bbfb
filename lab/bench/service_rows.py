"""The service's own path as a `bench quality` row: import the eval zoo, then rank every query.

The in-memory rows embed the zoo themselves; this row goes through what a deployment does
instead: `import_catalog` (image checks, cleansing, embedding, pgvector rows) into a scratch
database on the configured server (embedded by default, DATABASE_URL otherwise; dropped
afterwards), then the search engine's ranking step for each query image (the same call
`SearchEngine.search` makes, over the whole catalog so every rank is known).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lab.bench.quality import QualityContext, Row
from lab.metrics import ranking_metrics

ROW_NAME = "Service: imported catalog, pgvector search"


async def _imported_ranks(ctx: QualityContext, url: str, blob_dir: Path) -> tuple[NDArray[np.int64], int]:
    from db import catalog
    from db.database import Database
    from db.filters import Filters
    from inference_service.blobs import BlobStore
    from inference_service.catalog.importer import import_catalog
    from inference_service.config import Settings
    from inference_service.models.style_encoder import StyleEmbedder
    from inference_service.search.engine import SearchEngine

    # The service's settings; queries come one at a time, so no batching window to wait out.
    settings = Settings().model_copy(update={"dynamic_batching": False})
    async with await Database.open(url, max_size=2) as db:
        blobs = BlobStore(blob_dir)
        embedder = StyleEmbedder(ctx.encoder, ctx.encoder_label)
        report = await import_catalog(
            ctx.data.root, db, blobs, embedder, cleansing_threshold=ctx.config.cleansing_threshold
        )
        engine = SearchEngine(db, blobs, embedder, settings)
        slug_of = {row.id: row.slug for row in await db.run(catalog.list_loras)}
        ranks = []
        for query, image in zip(ctx.data.queries, ctx.data.query_images, strict=True):
            embeddings = await engine.embed([image])
            ranking = await engine.rank(embeddings, len(slug_of), Filters(), exact=False)
            ranked = [slug_of[lora_id] for lora_id, _ in ranking]
            ranks.append(ranked.index(query.slug) + 1 if query.slug in ranked else len(slug_of) + 1)
        await engine.aclose()
        return np.array(ranks, dtype=np.int64), report.dropped_by_cleansing


async def _run(ctx: QualityContext) -> tuple[NDArray[np.int64], int]:
    from db.embedded import database_url
    from db.scratch import scratch_database
    from inference_service.config import Settings

    settings = Settings()
    server = await asyncio.to_thread(database_url, settings.database_url, settings.pg_dir)
    with (
        scratch_database(server, "bench_quality") as url,
        tempfile.TemporaryDirectory(prefix="findlora-bench-blobs-") as blob_dir,
    ):
        return await _imported_ranks(ctx, url, Path(blob_dir))


def imported_catalog_rows(ctx: QualityContext) -> list[Row]:
    """One row: the eval zoo imported through the service, ranked by the service's d_avg search."""
    started = time.monotonic()
    ranks, dropped = asyncio.run(_run(ctx))
    return [
        Row(
            ROW_NAME,
            f"triplet encoder [{ctx.encoder_label}] via import_catalog ({dropped} dropped by cleansing)",
            "d_avg",
            True,
            ranking_metrics(ranks, ctx.config.bootstrap_resamples).as_dict(),
            {},
            time.monotonic() - started,
        )
    ]
