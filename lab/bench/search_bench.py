"""`bench search`: the service's two-stage search against the peers a user would pick, on one
synthetic catalog, in one run, on the same vectors.

Order of a run: metadata and queries are drawn first; one streamed pass over the catalog gives
the exact truth (lab/bench/search_peers.py) and, where memory allows, fills the in-memory peers'
arrays; the peers are timed and freed; then each storage layout (lab/bench/load.py) is loaded
into its own database and the two-stage search (and, bounded by `exhaustive_queries`, the SQL
exhaustive scan) is timed, cold then warm. Every path's recall is measured against the truth.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from db import ranking
from db.database import Database
from inference_service.scoring.two_stage import RankStats
from inference_service.search.centroids import TwoStageOptions, rank_d_avg
from lab.bench.load import LAYOUTS, CatalogMeta, LoadedCatalog, draw_metadata, load_catalog
from lab.bench.search_peers import (
    KINDS,
    FaissCentroids,
    FilterMasks,
    NumpyExhaustive,
    PeerPlan,
    Query,
    Ranked,
    ReferenceStore,
    make_queries,
    plan_peers,
    stream_truth,
)
from lab.bench.synthetic import Shape, SyntheticCatalog, calibration

__all__ = ["Query", "make_queries", "run_search_bench"]

Progress = Callable[[str, int, int], None]
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


@dataclass
class Timed:
    """One query on one path: its position in the query list, seconds, ranking by synthetic index."""

    j: int
    query: Query
    seconds: float
    ranked: Ranked
    stats: RankStats | None = None


@dataclass
class LayoutRun:
    loaded: LoadedCatalog
    passes: dict[str, dict[str, list[Timed]]]  # phase -> path -> rows
    server: dict[str, Any] = field(default_factory=dict)
    backend_rss_mb: float = float("nan")


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
    progress: Progress = lambda stage, done, total: None,
) -> dict[str, Any]:
    """`url` takes the first layout; `scratch(layout)` yields a database URL for each further one.
    `exhaustive_queries` None: every query up to 100k LoRAs, 4 beyond."""
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
    peer_report, peer_rows = await _run_peers(store, plan, queries, warmup, masks, k, options, progress)
    del store  # the layouts' servers get the memory back
    runs: dict[str, LayoutRun] = {}
    for i, layout in enumerate(layouts):
        database = nullcontext(url) if i == 0 or scratch is None else scratch(layout)
        with database as layout_url:
            loaded = await _load(layout_url, catalog, n_refs, meta, layout, seed, progress)
            runs[layout] = await _run_layout(
                layout_url, loaded, queries, warmup, k, options, exhaustive_queries, progress
            )
    return _report(
        n_loras, n_refs, k, shape, options, queries, truth, truth_s, runs, peer_report, peer_rows, plan
    )


async def _run_peers(
    store: ReferenceStore | None,
    plan: PeerPlan,
    queries: list[Query],
    warmup: list[Query],
    masks: FilterMasks,
    k: int,
    options: TwoStageOptions,
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
    for j, query in enumerate(queries):
        mask = masks(query.filters)
        if exhaustive is not None:
            started = time.perf_counter()
            ranked = exhaustive.rank(query, mask, k)
            rows.setdefault("numpy", []).append(Timed(j, query, time.perf_counter() - started, ranked))
        if ann is not None:
            started = time.perf_counter()
            ranked, stats = await ann.rank(query, mask, k)
            rows.setdefault("faiss_hnsw", []).append(
                Timed(j, query, time.perf_counter() - started, ranked, stats)
            )
        progress("peers", j + 1, len(queries))
    if exhaustive is not None:
        report["numpy"] = {
            "memory_mb": _mb(exhaustive.nbytes + masks.nbytes),
            "build_s": round(exhaustive.build_s, 3),
            "references": str(store.refs.dtype),
        }
    if ann is not None:
        report["faiss_hnsw"] = {
            "memory_mb": _mb(ann.nbytes + masks.nbytes),
            "build_s": round(ann.build_s, 3),
            "references": str(store.refs.dtype),
            "index": f"IndexHNSWFlat M {ann.index.hnsw.nb_neighbors(1)}, efConstruction"
            f" {ann.index.hnsw.efConstruction}, efSearch max({options.ef_search}, min(asked, 1000))",
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
) -> LoadedCatalog:
    loaded_so_far = 0

    def on_chunk(count: int) -> None:
        nonlocal loaded_so_far
        loaded_so_far += count
        progress(f"load ({layout})", loaded_so_far, catalog.n_loras)

    return await load_catalog(url, catalog, n_refs, seed=seed, progress=on_chunk, meta=meta, layout=layout)


async def _run_layout(
    url: str,
    loaded: LoadedCatalog,
    queries: list[Query],
    warmup: list[Query],
    k: int,
    options: TwoStageOptions,
    n_exhaustive: int,
    progress: Progress,
) -> LayoutRun:
    layout = loaded.layout
    run = LayoutRun(loaded, {})
    async with await Database.open(url, max_size=2) as db:
        async with db.connection() as conn:
            cur = await conn.execute(SERVER_FACTS_SQL.replace("SELECT ", "SELECT pg_backend_pid(), ", 1))
            row = await cur.fetchone()
        assert row is not None
        backend_pid = int(row[0])
        run.server = server_facts(row[1:])
        for query in warmup:
            await _exhaustive(db, query, k)
            await rank_d_avg(db, query.embeddings, limit=k, filters=query.filters, options=options)
        # Two passes over the queries: "cold" is the first time each query's LoRAs are touched
        # since the load, "warm" runs the same queries again, every page they need already
        # cached: the steady state of a server whose memory holds its working set.
        for phase in ("cold", "warm"):
            rows: dict[str, list[Timed]] = {"two_stage": [], "exhaustive_sql": []}
            for j, query in enumerate(queries):
                # Alternate which path runs first so background load hits both alike.
                paths = ["two_stage", "exhaustive_sql"] if j < n_exhaustive else ["two_stage"]
                for path in paths if j % 2 else paths[::-1]:
                    started = time.perf_counter()
                    stats = None
                    if path == "exhaustive_sql":
                        found = await _exhaustive(db, query, k)
                    else:
                        found, stats = await rank_d_avg(
                            db, query.embeddings, limit=k, filters=query.filters, options=options
                        )
                    seconds = time.perf_counter() - started
                    ranked = list(
                        zip(loaded.index_of([i for i, _ in found]), [d for _, d in found], strict=True)
                    )
                    rows[path].append(Timed(j, query, seconds, ranked, stats))
                progress(f"queries ({layout}, {phase})", j + 1, len(queries))
            run.passes[phase] = rows
        run.backend_rss_mb = _rss_mb(backend_pid)
    return run


async def _exhaustive(db: Database, query: Query, k: int) -> list[tuple[int, float]]:
    async with db.search_connection() as conn:
        return await ranking.rank_exhaustive(conn, query.embeddings, query.filters, limit=k)


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
    }


def _mb(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


def _rss_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def recall_at(truth: Ranked, got: Ranked, k: int) -> float:
    expected = {i for i, _ in truth[:k]}
    return len(expected & {i for i, _ in got[:k]}) / max(1, len(expected))


def path_summary(rows: list[Timed], truth: list[Ranked], k: int) -> dict[str, Any]:
    """Latency percentiles, recall@k and exact top-k match against the truth, overall and by kind."""
    recall = [recall_at(truth[r.j], r.ranked, k) for r in rows]
    exact = [[i for i, _ in r.ranked] == [i for i, _ in truth[r.j]] for r in rows]
    summary: dict[str, Any] = {
        "queries": len(rows),
        **_percentiles([r.seconds for r in rows]),
        f"recall_at_{k}": round(float(np.mean(recall)), 4),
        "exact_match_rate": round(float(np.mean(exact)), 4),
        "by_kind": {},
    }
    for kind in KINDS:
        picked = [(r, rc) for r, rc in zip(rows, recall, strict=True) if r.query.kind == kind]
        if picked:
            summary["by_kind"][kind] = {
                "queries": len(picked),
                **_percentiles([r.seconds for r, _ in picked]),
                f"recall_at_{k}": round(float(np.mean([rc for _, rc in picked])), 4),
            }
    scored = [r.stats for r in rows if r.stats is not None]
    if scored:
        summary["candidates_median"] = float(np.median([s.candidates for s in scored]))
        summary["exactly_scored_median"] = float(np.median([s.scored for s in scored]))
    return summary


def _with_ratio(summary: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """`two_stage_speedup`: this path's p50 over the reference two-stage p50 (above 1: the
    two-stage search is that many times faster), overall and by kind."""
    summary["two_stage_speedup"] = round(summary["p50_ms"] / reference["p50_ms"], 2)
    for kind, row in summary["by_kind"].items():
        if kind in reference["by_kind"]:
            row["two_stage_speedup"] = round(row["p50_ms"] / reference["by_kind"][kind]["p50_ms"], 2)
    return summary


def _report(
    n_loras: int,
    n_refs: int,
    k: int,
    shape: Shape,
    options: TwoStageOptions,
    queries: list[Query],
    truth: list[Ranked],
    truth_s: float,
    runs: dict[str, LayoutRun],
    peer_report: dict[str, Any],
    peer_rows: dict[str, list[Timed]],
    plan: PeerPlan,
) -> dict[str, Any]:
    first_layout, first = next(iter(runs.items()))
    reference = path_summary(first.passes["warm"]["two_stage"], truth, k)
    paths: dict[str, Any] = {}
    layouts: dict[str, Any] = {}
    for layout, run in runs.items():
        sizes = run.loaded.sizes_mb
        for path, relations, build in (
            ("two_stage", ("reference_images", "lora_style_summary"), run.loaded.index_build_s),
            ("exhaustive_sql", ("reference_images", "loras"), 0.0),
        ):
            rows = run.passes["warm"][path]
            if rows:
                summary = _with_ratio(path_summary(rows, truth, k), reference)
                summary["memory_mb"] = round(sum(sizes[r] for r in relations), 1)
                summary["build_s"] = round(run.loaded.load_s + build, 2)
                paths[f"{path}[{layout}]"] = summary
        layouts[layout] = {
            "column_types": run.loaded.column_types,
            "load_s": round(run.loaded.load_s, 2),
            "index_build_s": round(run.loaded.index_build_s, 2),
            "index_build_maintenance_work_mem": run.loaded.index_build_memory,
            "relation_sizes_mb": sizes,
            "cold": {path: path_summary(rows, truth, k) for path, rows in run.passes["cold"].items() if rows},
            "postgres_backend_rss_mb": round(run.backend_rss_mb, 1),
        }
    for name, rows in peer_rows.items():
        paths[name] = {**_with_ratio(path_summary(rows, truth, k), reference), **peer_report[name]}
    for name, entry in peer_report.items():
        paths.setdefault(name, entry)
    warm = first.passes["warm"]
    report: dict[str, Any] = {
        "bench": "search",
        "n_loras": n_loras,
        "n_refs": n_refs,
        "reference_vectors": n_loras * n_refs,
        "k": k,
        "queries": len(queries),
        "shape": asdict(shape),
        "shape_at_100_loras": calibration(shape),
        "options": asdict(options),
        "truth": {
            "method": "exact d_avg in numpy float64, streamed with the catalog",
            "seconds": round(truth_s, 2),
        },
        "layout": first_layout,
        "timed_pass": "warm",
        "paths": paths,
        "two_stage_vs_numpy": paths.get("numpy", {}).get("two_stage_speedup"),
        "layouts": layouts,
        "peers": {
            "budget_mb": _mb(plan.budget_bytes),
            "needs_mb": {name: _mb(b) for name, b in plan.needs_bytes.items()},
            "references_held": plan.ref_dtype or "none",
        },
        # The headline figures of the first layout, as the bench has always reported them.
        **_headline(warm, first.passes["cold"], truth, k, reference),
        "load_s": round(first.loaded.load_s, 2),
        "index_build_s": round(first.loaded.index_build_s, 2),
        "relation_sizes_mb": first.loaded.sizes_mb,
        "server": first.server,
        "rss_mb": {
            "bench_process_peak": round(_rss_mb(), 1),
            "postgres_backend": round(first.backend_rss_mb, 1),
        },
        "cpus": os.cpu_count(),
    }
    return report


def _headline(
    warm: dict[str, list[Timed]],
    cold: dict[str, list[Timed]],
    truth: list[Ranked],
    k: int,
    reference: dict[str, Any],
) -> dict[str, Any]:
    """Two-stage vs SQL exhaustive: the ratio over the queries both paths ran."""
    two, ex = warm["two_stage"], warm["exhaustive_sql"]
    both = {r.j for r in ex}
    stats = [r.stats for r in two if r.stats is not None]
    out: dict[str, Any] = {
        "two_stage": {key: reference[key] for key in ("p50_ms", "p95_ms")},
        f"recall_at_{k}": reference[f"recall_at_{k}"],
        "exact_match_rate": reference["exact_match_rate"],
        "exact_scan": bool(stats[0].details.get("exact_scan")) if stats else None,
        "candidates": {
            "median": float(np.median([s.candidates for s in stats])),
            "p95": float(np.percentile([s.candidates for s in stats], 95)),
        },
        "exactly_scored": {
            "median": float(np.median([s.scored for s in stats])),
            "p95": float(np.percentile([s.scored for s in stats], 95)),
        },
        "by_kind": reference["by_kind"],
        "exhaustive": None,
        "speedup_p50": None,
        "cold": {"two_stage": _percentiles([r.seconds for r in cold["two_stage"]])},
    }
    if ex:
        out["exhaustive"] = {"queries": len(ex), **_percentiles([r.seconds for r in ex])}
        paired = _percentiles([r.seconds for r in two if r.j in both])
        out["speedup_p50"] = round(out["exhaustive"]["p50_ms"] / paired["p50_ms"], 2)
        cold_ex = _percentiles([r.seconds for r in cold["exhaustive_sql"]])
        cold_two = _percentiles([r.seconds for r in cold["two_stage"] if r.j in both])
        out["cold"]["exhaustive"] = cold_ex
        out["cold"]["speedup_p50"] = round(cold_ex["p50_ms"] / cold_two["p50_ms"], 2)
    out["cold"]["two_stage_single"] = _percentiles(
        [r.seconds for r in cold["two_stage"] if r.query.kind == "single"]
    )
    return out
