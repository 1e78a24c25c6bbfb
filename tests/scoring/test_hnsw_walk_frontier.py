"""The in-memory faiss walk's frontier bounds every row it has not yielded, on the bench's catalog
shape (lookalike families) with query images far from every centroid: where a narrow beam settles
in the shell of equidistant centroids and misses the query's nearest family (docs/design.md 5)."""

from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import pytest

from db.filters import Filters
from inference_service.search.centroid_hnsw import HNSW_M, centroid_distances, lower_slack
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
        by_dim=np.ascontiguousarray(centroids.T),
        sqnorm=np.einsum("ij,ij->i", wide, wide).astype(np.float32),
        mean_radius=radius.astype(np.float32),
        mean_sq_radius=sq_radius.astype(np.float32),
        searchable=np.ones(n, bool),
        nsfw=np.zeros(n, bool),
        base_code=np.zeros(n, np.int32),
        base_names=("SDXL 1.0",),
        alive=np.ones(n, bool),
        graph=HnswGraph.over(centroids),
        exact_below=0,
    )
    return catalog, view


async def rows_missed_below_frontier(
    view: CentroidView, queries: np.ndarray, options: TwoStageOptions, top: np.ndarray | None = None
) -> int:
    """Rows nearer a query than its walk's first frontier that the walk did not yield; with `top`
    (each query's rows to count), only those."""
    missed = 0
    for j, query in enumerate(queries):
        walk = view.source([query], Filters(allow_nsfw=True), 10, options)
        assert isinstance(walk, HnswWalk)
        batch = await walk.next_batch()
        distance = centroid_distances(view.centroids, query[None, :])[:, 0]
        below = np.flatnonzero(distance < batch.frontier)
        left = np.setdiff1d(below, batch.lora_ids)
        missed += len(left) if top is None else len(np.intersect1d(left, top[j]))
    return missed


def far_queries(catalog: SyntheticCatalog) -> np.ndarray:
    """One query image for each of N_QUERIES LoRAs, far from every centroid as the bench's are."""
    rng = np.random.default_rng(6)
    queries: np.ndarray = catalog.queries(rng.choice(N_LORAS, N_QUERIES, replace=False), rng)
    return queries


def top_by_d_avg(catalog: SyntheticCatalog, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Each query's k rows of smallest d_avg over the catalog's references (float64)."""
    refs = catalog.references(0, N_LORAS, N_REFS).reshape(-1, queries.shape[1]).astype(np.float64)
    q = queries.astype(np.float64)
    d2 = np.einsum("ij,ij->i", refs, refs)[:, None] - 2 * refs @ q.T + np.einsum("ij,ij->i", q, q)[None, :]
    d_avg = np.sqrt(np.maximum(d2, 0.0)).reshape(N_LORAS, N_REFS, len(q)).mean(axis=1)
    return np.argsort(d_avg, axis=0)[:k].T


async def test_the_walk_leaves_no_top_row_below_its_frontier(
    catalog_view: tuple[SyntheticCatalog, CentroidView],
) -> None:
    catalog, view = catalog_view
    queries = far_queries(catalog)
    # The catalog is hard enough to tell: a narrow beam leaves rows below its frontier (about
    # 40 at 200, 16 at 300, 6 at 400, 1 at 800 when measured, on the index's graph).
    assert await rows_missed_below_frontier(view, queries, TwoStageOptions(memory_ef_search=200)) > 15
    # The default's beam leaves a handful at most, none that d_avg ranks in a query's top 10.
    assert await rows_missed_below_frontier(view, queries, TwoStageOptions()) <= 5
    top = top_by_d_avg(catalog, queries)
    assert await rows_missed_below_frontier(view, queries, TwoStageOptions(), top) == 0


async def test_full_link_lists_cross_from_the_shell_into_the_nearest_family(
    catalog_view: tuple[SyntheticCatalog, CentroidView],
) -> None:
    """The index's graph keeps all 2M links of every row at level 0; faiss's pruning keeps about a
    quarter of them, and a narrow beam over the pruned graph leaves many more rows below its
    frontier (about 130 against 6 at 400 when measured)."""
    catalog, view = catalog_view
    m0 = view.graph.index.hnsw.nb_neighbors(0)
    assert m0 == 2 * HNSW_M
    assert level0_links(view.graph.index).min() == m0
    pruned = dataclasses.replace(view, graph=HnswGraph.over(view.centroids, full_level0=False))
    assert level0_links(pruned.graph.index).mean() < m0 / 2
    queries = far_queries(catalog)
    narrow = TwoStageOptions(memory_ef_search=400)
    full_missed = await rows_missed_below_frontier(view, queries, narrow)
    assert 4 * full_missed < await rows_missed_below_frontier(pruned, queries, narrow)


def level0_links(index: faiss.IndexHNSW) -> np.ndarray:
    """Each row's number of links at level 0."""
    hnsw = index.hnsw
    neighbors, offsets = faiss.vector_to_array(hnsw.neighbors), faiss.vector_to_array(hnsw.offsets)
    lists = np.stack([neighbors[offsets[:-1] + j] for j in range(hnsw.nb_neighbors(0))], axis=1)
    counts: np.ndarray = (lists >= 0).sum(axis=1)
    return counts


class CountedWalks:
    """The faiss walks one HnswWalk runs, by the k each asked for."""

    def __init__(self, walk: HnswWalk) -> None:
        self.asked: list[int] = []
        self.walk_once = walk._walk
        walk._walk = self  # type: ignore[method-assign]

    def __call__(self, covered: int, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        self.asked.append(k)
        return self.walk_once(covered, k, ef)


async def test_later_batches_are_read_from_the_first_walks_beam(
    catalog_view: tuple[SyntheticCatalog, CentroidView],
) -> None:
    """faiss explores the same rows for any k up to efSearch, so the walk's second batch is the
    next stretch of one fresh walk asked for both batches' rows, and no second walk runs."""
    catalog, view = catalog_view
    rng = np.random.default_rng(7)
    options = TwoStageOptions()
    for query in catalog.queries(rng.choice(N_LORAS, 5, replace=False), rng):
        walk = view.source([query], Filters(allow_nsfw=True), 10, options)
        assert isinstance(walk, HnswWalk)
        walks = CountedWalks(walk)
        first, second = await walk.next_batch(), await walk.next_batch()
        assert walks.asked == [options.memory_ef_search]
        params = faiss.SearchParametersHNSW()
        params.efSearch = options.memory_ef_search
        dist2, fresh = view.graph.index.search(query[None, :], 2 * options.first_batch, params=params)
        assert first.lora_ids.tolist() == fresh[0][: options.first_batch].tolist()
        assert second.lora_ids.tolist() == fresh[0][options.first_batch :].tolist()
        assert second.frontier == float(lower_slack(np.sqrt(dist2[0][-1:]))[0]) - view.graph.stored_error


def test_the_graph_stores_half_precision_and_knows_how_far_its_distances_may_be_off(
    catalog_view: tuple[SyntheticCatalog, CentroidView],
) -> None:
    """The graph's vectors are float16; its stored_error is the largest |c - stored c|, so that
    |q - stored c| - stored_error never exceeds the true |q - c| (what a frontier must bound),
    and it grows with rows added later."""
    _, view = catalog_view
    graph = view.graph
    assert faiss.downcast_index(graph.index.storage).code_size == 2 * view.centroids.shape[1]  # 2 bytes a dim
    stored = graph.index.reconstruct_n(0, graph.rows)
    error = np.linalg.norm(view.centroids.astype(np.float64) - stored, axis=1)
    assert 0 < graph.stored_error == pytest.approx(error.max(), rel=1e-9)
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(50, view.centroids.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    true = centroid_distances(view.centroids, queries)
    walked = centroid_distances(stored, queries)
    assert np.all(walked - graph.stored_error <= true + 1e-9)
    larger = HnswGraph.over(view.centroids[:100])
    larger.add(4 * view.centroids[100:110])  # larger norms round further
    assert larger.rows == 110
    assert larger.stored_error > 2 * graph.stored_error
