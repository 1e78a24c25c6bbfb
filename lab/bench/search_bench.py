"""`bench search`: the service's two-stage search against the peers a user would pick, on one
synthetic catalog, in one run, on the same vectors.

Order of a run: metadata and queries are drawn first; one streamed pass over the catalog gives
the exact truth (lab/bench/search_peers.py) and, where memory allows, fills the in-memory peers'
arrays; the peers are timed and freed; then each storage layout (lab/bench/load.py) is loaded
into its own database and the two-stage search (and, bounded by `exhaustive_queries`, the SQL
exhaustive scan) is timed, cold then warm. Every path's recall is measured against the truth.

Each path answers every query in a block of its own (`order="blocks"`), the steady state of a
server running that path: a service's in-memory search timed right after pgvector's walk or the
SQL scan (`order="interleaved"`, each query on every path in turn) runs on caches another path
just filled, and took 1.5-2x its own time at 100k on the development machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from db import ranking
from db.database import Database
from inference_service.search.centroids import TwoStageOptions, rank_d_avg
from inference_service.search.memory_index import CentroidIndex, IndexConfig
from lab.bench.load import LAYOUTS, CatalogMeta, LoadedCatalog, draw_metadata, load_catalog
from lab.bench.search_peers import (
    FaissCentroids,
    FilterMasks,
    NumpyExhaustive,
    PeerPlan,
    Query,
    ReferenceStore,
    make_queries,
    plan_peers,
    stream_truth,
)
from lab.bench.search_report import LayoutRun, Timed, build_report, mb, rss_mb
from lab.bench.synthetic import Shape, SyntheticCatalog

__all__ = ["Query", "make_queries", "run_search_bench"]

Progress = Callable[[str, int, int], None]
# Where the two-stage search finds its candidates: the service's in-memory centroid index
# (search/memory_index.py, its default), pgvector's HNSW walk, or both timed side by side.
CENTROID_INDEXES = ("memory", "pgvector", "both")
# How the paths take turns: each over every query in its own block, or each query on every path.
ORDERS = ("blocks", "interleaved")
# The SQL exhaustive scan takes seconds per query beyond this size: time only a few by default.
EXHAUSTIVE_ALL_UP_TO = 100_000
EXHAUSTIVE_FEW = 4
SERVER_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
)
# The server a benchmark's figures came from: version, pgvector, then SERVER_SETTINGS in order.
SERVER_FACTS_SQL = (
    "SELECT current_setting('server_version'),"
    " (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
    + ", ".join(f"current_setting('{name}')" for name in SERVER_SETTINGS)
)


def server_facts(row: Sequence[Any]) -> dict[str, Any]:
    """A SERVER_FACTS_SQL row as the `server` entry of a benchmark's JSON."""
    return {"postgres": row[0], "pgvector": row[1], **dict(zip(SERVER_SETTINGS, row[2:], strict=True))}


async def run_search_bench(
    url: str,
    *,
    n_loras: int,
    n_refs: int = 30,
    n_queries: int = 40,
    k: int = 10,
    shape: Shape | None = None,
    options: TwoStageOptions | None = None,
    seed: int = 0,
    layouts: Sequence[str] = ("product",),
    scratch: Callable[[str], AbstractContextManager[str]] | None = None,
    peers: str = "auto",
    peer_budget_bytes: int | None = None,
    exhaustive_queries: int | None = None,
    centroid_index: str = "both",
    references_mb: int = IndexConfig.references_mb,
    order: str = "blocks",
    progress: Progress = lambda stage, done, total: None,
) -> dict[str, Any]:
    """`url` takes the first layout; `scratch(layout)` yields a database URL for each further one.
    `exhaustive_queries` None: every query up to 100k LoRAs, 4 beyond. `centroid_index`: the
    two-stage search's candidates from the service's in-memory index ("memory"), pgvector's walk
    ("pgvector"), or both, the in-memory one as `two_stage` and pgvector's as `two_stage_pgvector`;
    `references_mb`: the in-memory index's budget for holding references (IndexConfig);
    `order`: ORDERS, see the module's docstring."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if centroid_index not in CENTROID_INDEXES:
        raise ValueError(
            f"centroid_index must be one of {', '.join(CENTROID_INDEXES)}; got {centroid_index!r}"
        )
    unknown = [name for name in layouts if name not in LAYOUTS]
    if unknown or not layouts or len(set(layouts)) != len(layouts):
        raise ValueError(f"layouts must be distinct names among {', '.join(LAYOUTS)}; got {list(layouts)}")
    if len(layouts) > 1 and scratch is None:
        raise ValueError("more than one layout needs a scratch database for each further layout")
    shape = shape or Shape()
    options = options or TwoStageOptions()
    if exhaustive_queries is None:
        exhaustive_queries = n_queries if n_loras <= EXHAUSTIVE_ALL_UP_TO else EXHAUSTIVE_FEW
    catalog = SyntheticCatalog(n_loras, shape, seed)
    meta = draw_metadata(n_loras, seed)
    queries = make_queries(catalog, meta.base_model, meta.active, n_queries, seed)
    # Plans, connections and caches are warmed with queries of another draw, so the timed
    # queries' own pages stay cold for the first pass.
    warmup = make_queries(catalog, meta.base_model, meta.active, 4, seed + 1)[:3]
    masks = FilterMasks(meta)
    plan = plan_peers(peers, n_loras, n_refs, shape.dim, peer_budget_bytes)
    store = (
        ReferenceStore.empty(n_loras, n_refs, shape.dim, np.dtype(plan.ref_dtype)) if plan.ref_dtype else None
    )
    truth, truth_s = stream_truth(
        catalog, n_refs, queries, masks, k, store, lambda done: progress("exact truth", done, n_loras)
    )
    peer_report, peer_rows = await _run_peers(
        store, plan, queries, warmup, masks, k, options, order, progress
    )
    del store  # the layouts' servers get the memory back
    runs: dict[str, LayoutRun] = {}
    for i, layout in enumerate(layouts):
        database = nullcontext(url) if i == 0 or scratch is None else scratch(layout)
        with database as layout_url:
            loaded = await _load(
                layout_url, catalog, n_refs, meta, layout, seed, progress, centroid_index != "memory"
            )
            runs[layout] = await _run_layout(
                layout_url,
                loaded,
                queries,
                warmup,
                k,
                options,
                exhaustive_queries,
                centroid_index,
                IndexConfig(references_mb=references_mb),
                order,
                progress,
            )
    report = build_report(
        n_loras, n_refs, k, shape, options, queries, truth, truth_s, runs, peer_report, peer_rows, plan
    )
    report["order"] = order
    return report


def timing_order(paths: Sequence[str], n_queries: int, n_last_path: int, order: str) -> list[tuple[str, int]]:
    """(path, query index) in the order they are timed. The last path answers only the first
    `n_last_path` queries (the SQL scan's budget). "blocks": each path over its queries in turn,
    the last path last; "interleaved": each query on every path, which path goes first
    alternating so slow drift in background load hits both alike."""
    if not paths:
        return []
    counts = [n_queries] * (len(paths) - 1) + [min(n_last_path, n_queries)]
    if order == "blocks":
        return [(path, j) for path, count in zip(paths, counts, strict=True) for j in range(count)]
    turns: list[tuple[str, int]] = []
    for j in range(n_queries):
        asked = [path for path, count in zip(paths, counts, strict=True) if j < count]
        turns.extend((path, j) for path in (asked if j % 2 else asked[::-1]))
    return turns


async def _run_peers(
    store: ReferenceStore | None,
    plan: PeerPlan,
    queries: list[Query],
    warmup: list[Query],
    masks: FilterMasks,
    k: int,
    options: TwoStageOptions,
    order: str,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, list[Timed]]]:
    report: dict[str, Any] = {name: {"skipped": why} for name, why in plan.skipped.items()}
    rows: dict[str, list[Timed]] = {}
    if store is None:
        return report, rows
    exhaustive = NumpyExhaustive(store.refs) if plan.numpy else None
    ann = FaissCentroids(store, options) if plan.faiss else None
    for query in warmup:
        mask = masks(query.filters)
        if exhaustive is not None:
            exhaustive.rank(query, mask, k)
        if ann is not None:
            await ann.rank(query, mask, k)
    if ann is not None:
        ann.fallbacks = 0
    timed = [name for name, peer in (("numpy", exhaustive), ("faiss_hnsw", ann)) if peer is not None]
    turns = timing_order(timed, len(queries), len(queries), order)
    for done, (name, j) in enumerate(turns, 1):
        query = queries[j]
        mask = masks(query.filters)
        started = time.perf_counter()
        if name == "numpy":
            assert exhaustive is not None
            ranked, stats = exhaustive.rank(query, mask, k), None
        else:
            assert ann is not None
            ranked, stats = await ann.rank(query, mask, k)
        rows.setdefault(name, []).append(Timed(j, query, time.perf_counter() - started, ranked, stats))
        progress("peers", done, len(turns))
    if exhaustive is not None:
        report["numpy"] = {
            "memory_mb": mb(exhaustive.nbytes + masks.nbytes),
            "build_s": round(exhaustive.build_s, 3),
            "references": str(store.refs.dtype),
        }
    if ann is not None:
        report["faiss_hnsw"] = {
            "memory_mb": mb(ann.nbytes + masks.nbytes),
            "build_s": round(ann.build_s, 3),
            "references": str(store.refs.dtype),
            "index": f"IndexHNSWFlat M {ann.index.hnsw.nb_neighbors(1)}, efConstruction"
            f" {ann.index.hnsw.efConstruction}, efSearch max({options.memory_ef_search}, min(asked, 1000))",
            "candidates": "first batch 256 per query image, doubling under the two-stage bound rule",
            "flat_scan_fallbacks": ann.fallbacks,
            "threads": int(_faiss_threads()),
        }
    return report, rows


def _faiss_threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())


async def _load(
    url: str,
    catalog: SyntheticCatalog,
    n_refs: int,
    meta: CatalogMeta,
    layout: str,
    seed: int,
    progress: Progress,
    centroid_hnsw: bool,
) -> LoadedCatalog:
    loaded_so_far = 0

    def on_chunk(count: int) -> None:
        nonlocal loaded_so_far
        loaded_so_far += count
        progress(f"load ({layout})", loaded_so_far, catalog.n_loras)

    return await load_catalog(
        url,
        catalog,
        n_refs,
        seed=seed,
        progress=on_chunk,
        meta=meta,
        layout=layout,
        centroid_hnsw=centroid_hnsw,
    )


async def _run_layout(
    url: str,
    loaded: LoadedCatalog,
    queries: list[Query],
    warmup: list[Query],
    k: int,
    options: TwoStageOptions,
    n_exhaustive: int,
    centroid_index: str,
    index_config: IndexConfig,
    order: str,
    progress: Progress,
) -> LayoutRun:
    layout = loaded.layout
    run = LayoutRun(loaded, {})
    async with await Database.open(url, max_size=2) as db:
        index = None
        if centroid_index != "pgvector":
            progress(f"memory index ({layout})", 0, 1)
            index = CentroidIndex(db, index_config)
            started = time.perf_counter()
            view = await index.build()
            await index.wait_ready()
            run.memory_index = {
                "build_s": round(time.perf_counter() - started, 2),
                "rows": len(view),
                "memory_mb": mb(view.nbytes),
                "exact_below": index.config.exact_below,
                # references held for exact scoring in memory (None: PostgreSQL scores)
                "references_held": None if view.references is None else len(view.references.embeddings),
            }
            progress(f"memory index ({layout})", 1, 1)
        two_stage_paths = {"two_stage": index}
        if centroid_index == "both":
            two_stage_paths["two_stage_pgvector"] = None
        async with db.connection() as conn:
            cur = await conn.execute(SERVER_FACTS_SQL.replace("SELECT ", "SELECT pg_backend_pid(), ", 1))
            row = await cur.fetchone()
        assert row is not None
        backend_pid = int(row[0])
        run.server = server_facts(row[1:])
        for query in warmup:
            await _exhaustive(db, query, k)
            for path_index in two_stage_paths.values():
                await rank_d_avg(
                    db, query.embeddings, limit=k, filters=query.filters, options=options, index=path_index
                )
        # Two passes over the queries: "cold" is the first time each query's LoRAs are touched
        # since the load, "warm" runs the same queries again, every page they need already
        # cached: the steady state of a server whose memory holds its working set.
        # The SQL scan is the last path, so in blocks it runs after the others: it reads every
        # page, which would warm theirs.
        turns = timing_order([*two_stage_paths, "exhaustive_sql"], len(queries), n_exhaustive, order)
        for phase in ("cold", "warm"):
            rows: dict[str, list[Timed]] = {name: [] for name in two_stage_paths}
            rows["exhaustive_sql"] = []
            for done, (path, j) in enumerate(turns, 1):
                query = queries[j]
                started = time.perf_counter()
                stats = None
                if path == "exhaustive_sql":
                    found = await _exhaustive(db, query, k)
                else:
                    found, stats = await rank_d_avg(
                        db,
                        query.embeddings,
                        limit=k,
                        filters=query.filters,
                        options=options,
                        index=two_stage_paths[path],
                    )
                seconds = time.perf_counter() - started
                ranked = list(zip(loaded.index_of([i for i, _ in found]), [d for _, d in found], strict=True))
                rows[path].append(Timed(j, query, seconds, ranked, stats))
                progress(f"queries ({layout}, {phase})", done, len(turns))
            run.passes[phase] = rows
        run.backend_rss_mb = rss_mb(backend_pid)
        if index is not None:
            await index.aclose()
    return run


async def _exhaustive(db: Database, query: Query, k: int) -> list[tuple[int, float]]:
    async with db.search_connection() as conn:
        return await ranking.rank_exhaustive(conn, query.embeddings, query.filters, limit=k)
