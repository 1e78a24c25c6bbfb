"""`bench crossover`: at which catalog size the service's HNSW walk becomes cheaper than its exact
centroid scan (FINDLORA_CENTROID_INDEX_EXACT_BELOW).

Per size: a synthetic catalog, its exact truth, and one in-memory view built as the service builds
it (search/memory_index.standalone_view: the same columns, graph and references), ranked by the
service's own in-memory search (search/centroids.rank_in_memory) twice per query, once forced to
walk the graph and once forced to scan every centroid, the two alternating which goes first. Only
the candidate source differs, so the ratio of the two is where the threshold belongs. Several
images always scan, so single-image and filtered queries are timed.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from db.summaries import ReferenceBlocks, SummaryArrays
from inference_service.search.centroids import rank_in_memory
from inference_service.search.memory_index import standalone_view
from inference_service.search.memory_view import CentroidView
from inference_service.search.options import TwoStageOptions
from lab.bench.beam import references_dtype
from lab.bench.load import draw_metadata
from lab.bench.search_bench import Progress
from lab.bench.search_peers import FilterMasks, Query, ReferenceStore, make_queries, stream_truth
from lab.bench.search_report import recall_at
from lab.bench.synthetic import Shape, SyntheticCatalog

KINDS = ("single", "filtered")
SOURCES = ("walk", "scan")


async def run_crossover_bench(
    sizes: Sequence[int],
    *,
    n_refs: int = 30,
    n_queries: int = 200,
    k: int = 10,
    repeats: int = 2,
    seed: int = 0,
    progress: Progress = lambda stage, done, total: None,
) -> dict[str, Any]:
    """Per size and query kind: p50/p95 and recall@k of the walk and of the scan, and the scan's
    p50 as a ratio of the walk's; with the single-image crossover interpolated between sizes."""
    shape = Shape()
    too_big = [n for n in sizes if not fits(n, n_refs)]  # refused before anything is generated
    if too_big:
        raise ValueError(f"{too_big[0]} LoRAs x {n_refs} references do not fit in memory as float32")
    results = []
    for n in sizes:
        catalog = SyntheticCatalog(n, shape, seed)
        meta = draw_metadata(n, seed)
        queries = [
            q for q in make_queries(catalog, meta.base_model, meta.active, n_queries, seed) if q.kind in KINDS
        ]
        store = ReferenceStore.empty(n, n_refs, shape.dim, np.dtype(np.float32))
        truth, _ = stream_truth(
            catalog, n_refs, queries, FilterMasks(meta), k, store, partial(_truth_progress, progress, n)
        )
        ids = np.arange(1, n + 1, dtype=np.int64)
        rows = SummaryArrays(
            ids,
            np.zeros(n, np.int64),
            store.centroids,
            store.radius,
            store.sq_radius,
            meta.active,
            meta.nsfw,
            list(meta.base_model),
        )
        blocks = ReferenceBlocks(ids, np.full(n, n_refs, np.int64), store.refs.reshape(-1, shape.dim))
        progress(f"index at {n}", 0, 1)
        started = time.perf_counter()
        walk = standalone_view(rows, blocks, exact_below=1)
        build_s = time.perf_counter() - started
        progress(f"index at {n}", 1, 1)
        del rows, blocks, store  # the view holds its own copies
        views = {"walk": walk, "scan": dataclasses.replace(walk, exact_below=2**62)}
        results.append(
            {"loras": n, "index_build_s": round(build_s, 1)}
            | await _time_sources(views, queries, truth, k, repeats, partial(progress, f"queries at {n}"))
        )
        del views, walk
    return {
        "bench": "crossover",
        "path": "the service's in-memory search (rank_in_memory), references held, float16 graph",
        "refs": n_refs,
        "queries": n_queries,
        "k": k,
        "repeats": repeats,
        "seed": seed,
        "sizes": results,
        "single_image_crossover": crossover(
            [r["loras"] for r in results], [_ratio(r, "single") for r in results]
        ),
    }


async def _time_sources(
    views: dict[str, CentroidView],
    queries: Sequence[Query],
    truth: Sequence[Any],
    k: int,
    repeats: int,
    progress: Callable[[int, int], None],
) -> dict[str, Any]:
    options = TwoStageOptions()
    seconds: dict[tuple[str, str], list[float]] = {(s, kind): [] for s in SOURCES for kind in KINDS}
    recall: dict[tuple[str, str], list[float]] = {(s, kind): [] for s in SOURCES for kind in KINDS}
    for query in queries[:4]:  # warm-up
        for view in views.values():
            await rank_in_memory(view, query.embeddings, k, query.filters, options)
    for repeat in range(repeats):
        for j, query in enumerate(queries):
            order = SOURCES if j % 2 else SOURCES[::-1]
            for source in order:
                started = time.perf_counter()
                ranked, _ = await rank_in_memory(views[source], query.embeddings, k, query.filters, options)
                seconds[source, query.kind].append(time.perf_counter() - started)
                if repeat == 0:
                    recall[source, query.kind].append(recall_at(truth[j], [(i - 1, d) for i, d in ranked], k))
            progress(repeat * len(queries) + j + 1, repeats * len(queries))
    by_kind: dict[str, Any] = {}
    for kind in KINDS:
        row: dict[str, Any] = {}
        for source in SOURCES:
            times = seconds[source, kind]
            row[source] = {
                "p50_ms": round(1e3 * float(np.median(times)), 3),
                "p95_ms": round(1e3 * float(np.percentile(times, 95)), 3),
                "recall_at_k": round(float(np.mean(recall[source, kind])), 4),
            }
        row["scan_over_walk_p50"] = round(row["scan"]["p50_ms"] / row["walk"]["p50_ms"], 3)
        by_kind[kind] = row
    return {"by_kind": by_kind}


def fits(n: int, n_refs: int) -> bool:
    """Whether the references fit as float32 (bench search's peer budget): the view holds them so."""
    try:
        return references_dtype(n, n_refs, Shape().dim) == np.float32
    except ValueError:
        return False


def _ratio(result: dict[str, Any], kind: str) -> float:
    return float(result["by_kind"][kind]["scan_over_walk_p50"])


def crossover(sizes: Sequence[int], ratios: Sequence[float]) -> int | None:
    """The size where the scan/walk ratio crosses 1, interpolated linearly in log size between the
    first pair of neighbouring sizes that straddle it; None when no pair does."""
    pairs = sorted(zip(sizes, ratios, strict=True))
    for (n0, r0), (n1, r1) in itertools.pairwise(pairs):
        if r0 <= 1.0 < r1:
            at = (1.0 - r0) / (r1 - r0)
            return round(float(np.exp(np.log(n0) + at * (np.log(n1) - np.log(n0)))))
    return None


def _truth_progress(progress: Progress, n: int, done: int) -> None:
    progress(f"exact truth at {n}", done, n)
