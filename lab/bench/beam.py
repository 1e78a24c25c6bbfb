"""`bench beam`: what the in-memory walk's beam (efSearch) and its graph buy at each catalog size.

The faiss peer of `bench search` (the service's graph, bound rule and exact rerank, no database)
walks the same queries with every beam in one process, so recall and time are compared in the
same run. Each size gets its own synthetic catalog and exact truth, and one graph per level-0
policy asked (`GRAPHS`: the service's full link lists, or faiss's pruned ones); every graph and
beam is run `repeats` times, interleaved, so a drift of the machine falls on all alike.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import psutil

from inference_service.search.options import TwoStageOptions
from lab.bench.load import draw_metadata
from lab.bench.search_bench import Progress
from lab.bench.search_peers import (
    BUDGET_FRACTION,
    FaissCentroids,
    FilterMasks,
    Query,
    Ranked,
    ReferenceStore,
    make_queries,
    stream_truth,
)
from lab.bench.search_report import recall_at
from lab.bench.synthetic import Shape, SyntheticCatalog

# Level 0's link lists: `full` as the service builds them (centroid_hnsw.new_hnsw), `pruned` as
# faiss's neighbour selection leaves them (the graph before full lists).
GRAPHS = {"full": True, "pruned": False}

Timings = dict[tuple[str, int], dict[str, list[float]]]  # (graph, beam) -> kind -> values


async def run_beam_bench(
    sizes: Sequence[int],
    beams: Sequence[int],
    *,
    graphs: Sequence[str] = ("full",),
    n_refs: int = 30,
    n_queries: int = 200,
    k: int = 10,
    repeats: int = 2,
    seed: int = 0,
    progress: Progress = lambda stage, done, total: None,
) -> dict[str, Any]:
    """Per size, graph and beam, by query kind: recall@k against the exact truth, p50/p95
    latency, and the p50 as a ratio of the first graph's first beam (the baseline) in the same run."""
    if not beams or len(set(beams)) != len(beams):
        raise ValueError(f"beams must be distinct; got {list(beams)}")
    if not graphs or len(set(graphs)) != len(graphs) or not set(graphs) <= set(GRAPHS):
        raise ValueError(f"graphs must be distinct names from {sorted(GRAPHS)}; got {list(graphs)}")
    shape = Shape()
    dtypes = {n: references_dtype(n, n_refs, shape.dim) for n in sizes}  # refuse before generating
    results = []
    for n in sizes:
        catalog = SyntheticCatalog(n, shape, seed)
        meta = draw_metadata(n, seed)
        queries = make_queries(catalog, meta.base_model, meta.active, n_queries, seed)
        masks = FilterMasks(meta)
        dtype = dtypes[n]
        store = ReferenceStore.empty(n, n_refs, shape.dim, dtype)
        truth, truth_s = stream_truth(
            catalog, n_refs, queries, masks, k, store, partial(_truth_progress, progress, n)
        )
        centroids = store.centroids  # each peer takes its own into its graph: the last, these
        peers = {}
        for done, graph in enumerate(graphs, 1):
            store.centroids = centroids if done == len(graphs) else centroids.copy()
            peers[graph] = FaissCentroids(store, TwoStageOptions(), full_level0=GRAPHS[graph])
            progress(f"graphs at {n}", done, len(graphs))
        del centroids
        seconds: Timings = {(graph, beam): {} for graph in graphs for beam in beams}
        recall: Timings = {(graph, beam): {} for graph in graphs for beam in beams}
        passes = [(graph, beam) for graph in graphs for beam in beams]
        # Caches and the graphs' pages are warmed with queries of another draw, as bench search does.
        warm = make_queries(catalog, meta.base_model, meta.active, 4, seed + 1)[:3]
        for peer in peers.values():
            for query in warm:
                await peer.rank(query, masks(query.filters), k)
        for repeat in range(repeats):
            for done, (graph, beam) in enumerate(passes):
                peer = peers[graph]
                peer.options = dataclasses.replace(TwoStageOptions(), memory_ef_search=beam)
                key = (graph, beam)
                await _walk_all(peer, queries, masks, k, truth, seconds[key], recall[key], repeat == 0)
                progress(f"beams at {n}", repeat * len(passes) + done + 1, repeats * len(passes))
        builds = {graph: peer.build_s for graph, peer in peers.items()}
        results.append(_size_report(n, passes, seconds, recall, builds, truth_s) | {"references": dtype.name})
        del peers, peer, store  # the next size's arrays get the memory
    return {
        "bench": "beam",
        "peer": "faiss_hnsw (the service's graph shape, bound rule and exact rerank; float32 graph)",
        "refs": n_refs,
        "queries": n_queries,
        "k": k,
        "repeats": repeats,
        "seed": seed,
        "baseline": {"graph": graphs[0], "beam": beams[0]},
        "sizes": results,
    }


def references_dtype(n: int, n_refs: int, dim: int, memory_bytes: int | None = None) -> np.dtype[Any]:
    """float32 references while they fit bench search's peer budget (a quarter of memory), else
    float16 while those fit half of memory (at 1M: 7.7 GB; the rerank widens the candidates' rows,
    and every beam pays the same), else refused, before anything is generated."""
    memory = memory_bytes if memory_bytes is not None else int(psutil.virtual_memory().total)
    size = n * n_refs * dim * 4
    if size <= BUDGET_FRACTION * memory:
        return np.dtype(np.float32)
    if size // 2 <= memory // 2:
        return np.dtype(np.float16)
    raise ValueError(
        f"{n} LoRAs x {n_refs} references need {size / 2e9:.1f} GB even as float16; "
        f"this machine has {memory / 1e9:.1f} GB"
    )


def _truth_progress(progress: Progress, n: int, done: int) -> None:
    progress(f"exact truth at {n}", done, n)


async def _walk_all(
    peer: FaissCentroids,
    queries: Sequence[Query],
    masks: FilterMasks,
    k: int,
    truth: Sequence[Ranked],
    seconds: dict[str, list[float]],
    recall: dict[str, list[float]],
    score_recall: bool,
) -> None:
    for j, query in enumerate(queries):
        mask = masks(query.filters)
        started = time.perf_counter()
        ranked, _ = await peer.rank(query, mask, k)
        seconds.setdefault(query.kind, []).append(time.perf_counter() - started)
        if score_recall:  # a beam answers the same way on every pass
            recall.setdefault(query.kind, []).append(recall_at(truth[j], ranked, k))


def _size_report(
    n: int,
    passes: Sequence[tuple[str, int]],
    seconds: Timings,
    recall: Timings,
    builds: dict[str, float],
    truth_s: float,
) -> dict[str, Any]:
    def p50(key: tuple[str, int], kind: str) -> float:
        return float(np.median(seconds[key][kind]))

    rows = []
    for graph, beam in passes:
        kinds = {}
        for kind, times in seconds[graph, beam].items():
            kinds[kind] = {
                "recall_at_k": round(float(np.mean(recall[graph, beam][kind])), 4),
                "p50_ms": round(1e3 * p50((graph, beam), kind), 3),
                "p95_ms": round(1e3 * float(np.percentile(times, 95)), 3),
                "p50_vs_baseline": round(p50((graph, beam), kind) / p50(passes[0], kind), 3),
            }
        rows.append({"graph": graph, "beam": beam, "by_kind": kinds})
    return {
        "loras": n,
        "graph_build_s": {graph: round(built, 1) for graph, built in builds.items()},
        "truth_s": round(truth_s, 1),
        "beams": rows,
    }
