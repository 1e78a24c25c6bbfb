"""Search over gRPC: two-stage by default equals --exact, concurrent requests are batched and
each caller gets its own ranking."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest

from db.clients import Role
from findlora_client import QueryImage
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import start_service
from tests.helpers.catalogs import apply_style, content_image, write_catalog
from tests.helpers.service import issue_token, service_client

pytestmark = pytest.mark.db


def _query(style: int, seed: int) -> QueryImage:
    image = apply_style(content_image(np.random.default_rng(seed)), style)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return QueryImage(buffer.getvalue(), f"q{style}.png", "image/png")


async def test_default_two_stage_equals_exact_and_batches_concurrent_searches(
    settings: Settings, tmp_path: Path
) -> None:
    # 14 searches from one caller: more than a requester's burst, and not what this test is about.
    settings = settings.model_copy(
        update={"batch_max_wait_ms": 50.0, "search_exact_below": 0, "rate_limit_per_s": 0}
    )
    runtime = await open_runtime(settings)
    try:
        await import_catalog(
            write_catalog(tmp_path / "catalog", n_loras=12, n_samples=5),
            runtime.db,
            runtime.blobs,
            runtime.embedder,
        )
    finally:
        await runtime.close()
    service = await start_service(settings, "127.0.0.1:0")
    try:
        # exact=True needs the moderate role.
        async with service_client(service, await issue_token(service, Role.MODERATE)) as client:
            queries = [[_query(s, 100 + s)] for s in range(6)] + [[_query(3, 7), _query(3, 8)]]
            fast = await asyncio.gather(*(client.search(q, top_k=5) for q in queries))
            exact = [await client.search(q, top_k=5, exact=True) for q in queries]
        for got, want in zip(fast, exact, strict=True):
            assert [m.slug for m in got.matches] == [m.slug for m in want.matches]
            assert [m.style_distance for m in got.matches] == pytest.approx(
                [m.style_distance for m in want.matches], abs=1e-5
            )
        assert len({r.matches[0].slug for r in fast}) > 1  # each caller got its own ranking
        assert service.engine is not None
        assert service.engine.batcher is not None
        stats = service.engine.batcher.batcher.stats
        assert stats.items == 2 * len(queries)
        assert stats.batches < stats.items  # the concurrent round shared encoder runs
    finally:
        await service.stop(1.0)
