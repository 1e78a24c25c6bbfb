"""The service's own path as `bench quality` rows: import the eval zoo, then rank every query;
with `--adapt-minutes`, also run `catalog adapt` on the imported catalog and rank again.

The in-memory rows embed the zoo themselves; these rows go through what a deployment does
instead: `import_catalog` (image checks, cleansing, embedding, pgvector rows) into a scratch
database on the configured server (embedded by default, DATABASE_URL otherwise; dropped
afterwards), then the search engine's ranking step for each query image (the same calls
`SearchEngine.search` makes: the active encoder embeds, a guard checks that encoder in the
ranking's snapshot; over the whole catalog so every rank is known). The adapted row reads the
catalog's references from the database and blob store, activates the adapted encoder only when
its validation says so, and ranks against the re-embedded references, exactly as
`findlora catalog adapt` and a running service do; its in-memory twin is the "(adapted)" row of
lab/bench/adapt_rows.py.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.training.adapt import AdaptConfig
from lab.bench.quality_context import QualityContext, Row
from lab.metrics import paired_deltas, ranking_metrics

if TYPE_CHECKING:
    from inference_service.search.engine import SearchEngine

ROW_NAME = "Service: imported catalog, pgvector search"
ADAPTED_ROW_NAME = "Service: imported catalog, catalog adapt, pgvector search"


@dataclass(frozen=True)
class ServiceRanks:
    ranks: NDArray[np.int64]
    dropped: int
    adapted: NDArray[np.int64] | None = None  # after `catalog adapt` (None: not asked, or no run)
    adaptation: dict[str, Any] | None = None


async def _ranks(ctx: QualityContext, engine: SearchEngine, slug_of: dict[int, str]) -> NDArray[np.int64]:
    from db.encoders import label_guard
    from db.filters import Filters

    embedder = await engine.encoders.current()
    guard = label_guard(embedder.label)  # as a search: ranked only against this encoder's rows
    ranks = []
    for query, image in zip(ctx.data.queries, ctx.data.query_images, strict=True):
        embeddings = await engine.embed([image], embedder=embedder)
        ranking = await engine.rank(embeddings, len(slug_of), Filters(), exact=False, guard=guard)
        ranked = [slug_of[lora_id] for lora_id, _ in ranking]
        ranks.append(ranked.index(query.slug) + 1 if query.slug in ranked else len(slug_of) + 1)
    return np.array(ranks, dtype=np.int64)


async def _imported_ranks(
    ctx: QualityContext, url: str, work: Path, adapt: AdaptConfig | None
) -> ServiceRanks:
    from db import catalog
    from db.database import Database
    from inference_service.blobs import BlobStore
    from inference_service.catalog.adaptation import AdaptError, adapt_catalog
    from inference_service.catalog.importer import import_catalog
    from inference_service.config import Settings
    from inference_service.models.style_encoder import StyleEmbedder
    from inference_service.search.engine import SearchEngine

    # The service's settings; queries come one at a time, so no batching window to wait out.
    settings = Settings().model_copy(update={"dynamic_batching": False, "data_dir": work})
    async with await Database.open(url, max_size=2) as db:
        blobs = BlobStore(work / "blobs")
        embedder = StyleEmbedder(ctx.encoder, ctx.encoder_label)
        report = await import_catalog(
            ctx.data.root, db, blobs, embedder, cleansing_threshold=ctx.config.cleansing_threshold
        )
        engine = SearchEngine(db, blobs, embedder, settings)
        try:
            slug_of = {row.id: row.slug for row in await db.run(catalog.list_loras)}
            ranks = await _ranks(ctx, engine, slug_of)
            if adapt is None:
                return ServiceRanks(ranks, report.dropped_by_cleansing)
            try:
                run = await adapt_catalog(db, blobs, engine.encoders, settings, adapt, progress=ctx.progress)
            except AdaptError as exc:  # a catalog too small to adapt to: said so, no row
                return ServiceRanks(ranks, report.dropped_by_cleansing, adaptation={"error": str(exc)})
            adapted = await _ranks(ctx, engine, slug_of)  # the active encoder: the adapted one if kept
            summary = {k: v for k, v in run.as_dict().items() if k not in ("train_samples", "val_samples")}
            return ServiceRanks(ranks, report.dropped_by_cleansing, adapted, summary)
        finally:
            await engine.aclose()


async def _run(ctx: QualityContext, adapt: AdaptConfig | None) -> ServiceRanks:
    from db.embedded import database_url
    from db.scratch import scratch_database
    from inference_service.config import Settings

    settings = Settings()
    server = await asyncio.to_thread(database_url, settings.database_url, settings.pg_dir)
    with (
        scratch_database(server, "bench_quality") as url,
        tempfile.TemporaryDirectory(prefix="findlora-bench-service-") as work,
    ):
        return await _imported_ranks(ctx, url, Path(work), adapt)


def service_rows(ctx: QualityContext, adapt: AdaptConfig | None = None) -> list[Row]:
    """The eval zoo imported through the service and ranked by its d_avg search; with `adapt`,
    a second row after `catalog adapt` on the imported catalog, with the paired delta."""
    started = time.monotonic()
    found = asyncio.run(_run(ctx, adapt))
    resamples = ctx.config.bootstrap_resamples
    featurizer = f"triplet encoder [{ctx.encoder_label}] via import_catalog"
    featurizer += f" ({found.dropped} dropped by cleansing)"
    rows = [
        Row(
            ROW_NAME,
            featurizer,
            "d_avg",
            True,
            {
                **ranking_metrics(found.ranks, resamples, clusters=ctx.data.truth).as_dict(),
                "query_ranks": [float(r) for r in found.ranks],
            },
            {},
            time.monotonic() - started,
        )
    ]
    if adapt is not None and found.adaptation is not None and found.adapted is None:
        tqdm.write(f"{ADAPTED_ROW_NAME}: no row: {found.adaptation['error']}")
    if adapt is not None and found.adapted is not None and found.adaptation is not None:
        active = found.adaptation["activated"] or found.adaptation["previous"]
        rows.append(
            Row(
                ADAPTED_ROW_NAME,
                f"active encoder after catalog adapt [{active}]",
                "d_avg",
                True,
                {
                    **ranking_metrics(found.adapted, resamples, clusters=ctx.data.truth).as_dict(),
                    "query_ranks": [float(r) for r in found.adapted],
                },
                {},
                time.monotonic() - started,
                extra={
                    "adapted_from": ROW_NAME,
                    **paired_deltas(found.ranks, found.adapted, resamples, clusters=ctx.data.truth),
                    "adaptation": {**found.adaptation, "max_minutes": adapt.max_minutes},
                },
            )
        )
    return rows


def imported_catalog_rows(ctx: QualityContext) -> list[Row]:
    """One row: the eval zoo imported through the service, ranked by the service's d_avg search."""
    return service_rows(ctx)


def imported_catalog_rows_adapted(adapt: AdaptConfig) -> Callable[[QualityContext], list[Row]]:
    """For `bench quality --adapt-minutes M`: the service row and the row after `catalog adapt`."""

    def rows(ctx: QualityContext) -> list[Row]:
        return service_rows(ctx, adapt)

    return rows
