"""The in-memory faiss walk's frontier bounds every row it has not yielded, on the bench's catalog
shape (lookalike families) with query images far from every centroid: where a narrow beam settles
in the shell of equidistant centroids and misses the query's nearest family (docs/design.md 5)."""

from __future__ import annotations

import numpy as np
import pytest

from db.filters import Filters
from inference_service.search.centroid_hnsw import build_hnsw, centroid_distances
from inference_service.search.memory_view import CentroidView, HnswGraph, HnswWalk
from inference_service.search.options import TwoStageOptions
from lab.bench.synthetic import SyntheticCatalog, summarise

N_LORAS, N_REFS, N_QUERIES = 20_000, 8, 150


@pytest.fixture(scope="module")
def catalog_view() -> tuple[SyntheticCatalog, CentroidView]:
    return family_catalog()


def family_catalog() -> tuple[SyntheticCatalog, CentroidView]:
    """The bench's catalog shape and a view over it, built as the index builds its graph."""
    catalog = SyntheticCatalog(N_LORAS, seed=5)
    centroids, radius, sq_radius = summarise(catalog.references(0, N_LORAS, N_REFS))
    wide = centroids.astype(np.float64)
    n = len(centroids)
    view = CentroidView(
        generation=1,
        lora_ids=np.arange(n, dtype=np.int64),
        centroids=centroids,
        sqnorm=np.einsum("ij,ij->i", wide, wide).astype(np.float32),
        mean_radius=radius.astype(np.float32),
        mean_sq_radius=sq_radius.astype(np.float32),
        searchable=np.ones(n, bool),
        nsfw=np.zeros(n, bool),
        base_code=np.zeros(n, np.int32),
        base_names=("SDXL 1.0",),
        alive=np.ones(n, bool),
        graph=HnswGraph(build_hnsw(centroids), n),
        exact_below=0,
    )
    return catalog, view


async def rows_missed_below_frontier(
    view: CentroidView, queries: np.ndarray, options: TwoStageOptions
) -> int:
    """Rows nearer a query than its walk's first frontier that the walk did not yield."""
    missed = 0
    for query in queries:
        walk = view.source([query], Filters(allow_nsfw=True), 10, options)
        assert isinstance(walk, HnswWalk)
        batch = await walk.next_batch()
        distance = centroid_distances(view.centroids, query[None, :])[:, 0]
        below = np.flatnonzero(distance < batch.frontier)
        missed += len(np.setdiff1d(below, batch.lora_ids))
    return missed


async def test_the_walk_yields_every_row_below_its_frontier(
    catalog_view: tuple[SyntheticCatalog, CentroidView],
) -> None:
    catalog, view = catalog_view
    rng = np.random.default_rng(6)
    queries = catalog.queries(rng.choice(N_LORAS, N_QUERIES, replace=False), rng)
    # The catalog is hard enough to tell: a narrow beam leaves rows below its frontier (about
    # 130 at 400, 7 at 800, none from 1200 on when measured, on the index's graph of M 64).
    assert await rows_missed_below_frontier(view, queries, TwoStageOptions(memory_ef_search=400)) > 0
    assert await rows_missed_below_frontier(view, queries, TwoStageOptions()) == 0
