"""`bench spec-search` on tiny catalogs: its batched RKME is scoring/rkme.py's, its exact scan
agrees with numpy over the same points and filters, and the report carries every figure."""

from __future__ import annotations

import numpy as np
import pytest

from inference_service.scoring.rkme import Spec, rkme_clip
from lab.bench.spec_catalog import (
    BenchQuery,
    SpecShape,
    SyntheticSpecs,
    make_catalog,
    make_queries,
    score_chunk,
)
from lab.bench.spec_search import run_spec_search_bench

SHAPE = SpecShape(dim=32, points_per_lora=8, style_dim=16, family_size=3, families_per_group=4)


def test_batched_scores_are_rkme_clip_and_nearest_points() -> None:
    specs = SyntheticSpecs(12, SHAPE, seed=3)
    queries = make_queries(specs, make_catalog(12, 3), 4, seed=3)
    for query in queries:
        query.nearest, query.rkme = np.zeros(12), np.zeros(12)
    points = specs.points(4, 12)
    score_chunk(points, queries, 4, gamma=1.5)
    for query in queries:
        assert query.rkme is not None
        assert query.nearest is not None
        for lora, lora_points in enumerate(points, start=4):
            spec = Spec(lora_points.astype(np.float64), np.zeros((len(lora_points), 1)))
            images = query.images.astype(np.float64)
            assert query.rkme[lora] == pytest.approx(rkme_clip(spec, images, 1.5), abs=1e-6)
            nearest = np.linalg.norm(lora_points[None] - images[:, None], axis=-1).min(axis=1).mean()
            assert query.nearest[lora] == pytest.approx(nearest, abs=1e-6)


def test_query_mix() -> None:
    specs = SyntheticSpecs(40, SHAPE, seed=0)
    queries: list[BenchQuery] = make_queries(specs, make_catalog(40, 0), 8, seed=0)
    assert [q.kind for q in queries[:4]] == ["single", "multi", "single", "filtered"]
    assert all(len(q.images) == 1 for q in queries if q.kind != "multi")
    assert all(2 <= len(q.images) <= 3 for q in queries if q.kind == "multi")
    assert all(q.filters.base_model and not q.filters.allow_nsfw for q in queries if q.kind == "filtered")


@pytest.mark.db
async def test_bench_spec_search_small(server_url: str) -> None:
    result = await run_spec_search_bench(server_url, [60, 150], shape=SHAPE, n_queries=4, candidates=10)
    assert [s["spec_points"] for s in result["sizes"]] == [480, 1200]
    for size in result["sizes"]:
        assert size["index"]["outcome"] == "created"
        assert size["exact_scan_vs_numpy"] == 1.0  # the bench's numpy truth is the SQL's
        assert 0.0 <= size["candidate_recall_at_10"] <= 1.0
        assert set(size["union_recall_at_10"]) == {"index_candidates", "exact_candidates", "index_min"}
        assert size["queries"] == 4
    growth = result["growth_exponent"]
    assert set(growth) == {"index_walk", "exact_scan"}
    assert list(growth["index_walk"]["pairwise"]) == ["480->1200"]
