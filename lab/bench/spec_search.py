"""`bench spec-search`: the fused search's GMI candidate step, HNSW walks vs the exact scan,
on synthetic spec points at several catalog sizes (docs/benchmarks-search.md, "GMI candidates").

Per size: a scratch database holds n LoRAs x `points_per_lora` unit spec points (dim 512 by
default) in a family tree (groups of families of lookalike LoRAs; noise along a power-law
spectrum, as lab/bench/synthetic.py shapes the style space), the index is built by the service's
own path (db.spec_index), and each query runs both candidate steps (db.spec_search). Reported:
p50/p95 of each, the growth exponent b (time ~ points^b) between sizes, the walks' candidate
recall against the exact scan's, and union recall: the fused top-10 over (style candidates ∪
GMI candidates) against the exhaustive fused top-10 over every LoRA passing the filters.

The fused scores are computed here, not by the service's GMI branch (no CLIP model builds
offline at these sizes): the GMI score is inference_service.scoring.rkme's RKME-CLIP (uniform
weights: the service's weighted RKME without a pseudo-prompt) of the very spec points loaded,
and the style score is a stand-in for d_avg: the distance from the query's style embedding to
the LoRA's style centre, in a 128-d space drawn on the same family tree. Fusion is
inference_service.scoring.fusion.rank_fused with the service's alpha and normalisation.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import psycopg
from psycopg import sql

from db import spec_index, spec_search
from db.database import Database
from inference_service.scoring.fusion import CatalogCounts, Normalisation, rank_fused
from lab.bench.spec_catalog import (
    BenchQuery,
    Catalog,
    Progress,
    SpecShape,
    SyntheticSpecs,
    load_specs,
    make_catalog,
    make_queries,
)

FUSED_TOP = 10


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def _top(scores: np.ndarray, mask: np.ndarray, m: int) -> list[int]:
    """Indices of the m lowest scores among mask, ties by index (the SQL's ORDER BY d, id)."""
    idx = np.flatnonzero(mask)
    return [int(i) for i in idx[np.lexsort((idx, scores[idx]))[:m]]]


def union_recall(
    query: BenchQuery,
    mask: np.ndarray,
    style: np.ndarray,
    gmi_candidates: list[int],
    m: int,
    alpha: float,
    normalisation: Normalisation,
) -> tuple[float, int]:
    """Recall of the exhaustive fused top-10 in the fused top-10 over (style top-m ∪ the GMI
    candidates), and the union's size: FusedSearch._union against FusedSearch._exhaustive."""
    assert query.rkme is not None
    passing = np.flatnonzero(mask)
    d_all = {int(i): float(style[i]) for i in passing}
    r_all = {int(i): float(query.rkme[i]) for i in passing}
    truth = {i for i, _ in rank_fused(d_all, r_all, alpha, normalisation, FUSED_TOP)}
    union = set(_top(style, mask, m)) | set(gmi_candidates)
    catalog = CatalogCounts(len(d_all), len(r_all), len(d_all.keys() | r_all.keys()))
    candidates = ({i: d_all[i] for i in union}, {i: r_all[i] for i in union})
    fused = rank_fused(*candidates, alpha, normalisation, FUSED_TOP, catalog)
    return len(truth & {i for i, _ in fused}) / max(1, len(truth)), len(union)


@dataclass
class Timed:
    query: BenchQuery
    walk: spec_search.SpecCandidates
    exact: list[int]  # the exact scan's candidates, synthetic LoRA indices
    walk_s: float
    exact_s: float


async def _time_queries(
    url: str,
    queries: list[BenchQuery],
    candidates: int,
    ef_search: int,
    warmup: list[BenchQuery],
    progress: Progress,
) -> list[Timed]:
    """Both candidate steps per query, each in a search transaction as GmiBranch.candidates
    runs it; the order alternates so background load hits both alike."""
    async with await Database.open(url, max_size=1) as db:
        async with db.connection() as conn:
            cur = await conn.execute("SELECT id FROM loras ORDER BY slug")
            index_of = {int(r[0]): i for i, r in enumerate(await cur.fetchall())}

        async def walk(query: BenchQuery) -> spec_search.SpecCandidates:
            async with db.search_connection() as conn:
                return await spec_search.nearest_spec_loras(
                    conn,
                    list(query.images),
                    query.filters,
                    limit=candidates,
                    exact_below=0,
                    ef_search=ef_search,
                )

        async def exact(query: BenchQuery) -> list[int]:
            async with db.search_connection() as conn:
                found = await spec_search.exact_nearest_spec_loras(
                    conn, list(query.images), query.filters, limit=candidates
                )
            return [index_of[i] for i, _ in found]

        for query in warmup:  # plans, connections and the index's upper layers
            await walk(query)
            await exact(query)
        timed = []
        for j, query in enumerate(queries):
            seconds: dict[str, float] = {}
            for path in ("walk", "exact") if j % 2 else ("exact", "walk"):
                started = time.perf_counter()
                if path == "walk":
                    walked = await walk(query)
                else:
                    exact_ids = await exact(query)
                seconds[path] = time.perf_counter() - started
            walked = spec_search.SpecCandidates(
                [(index_of[i], d) for i, d in walked.ranked],
                walked.exact_scan,
                walked.points_walked,
                walked.depth,
                walked.proven,
                walked.details,
            )
            timed.append(Timed(query, walked, exact_ids, seconds["walk"], seconds["exact"]))
            progress("queries", j + 1, len(queries))
    return timed


def _report(
    timed: list[Timed],
    catalog: Catalog,
    specs: SyntheticSpecs,
    candidates: int,
    alpha: float,
    normalisation: Normalisation,
) -> dict[str, Any]:
    recall, numpy_agrees, union_walk, union_exact, union_size, points, proven = [], [], [], [], [], [], []
    by_kind: dict[str, dict[str, list[float]]] = {}
    for t in timed:
        q = t.query
        mask = catalog.passes(q.filters)
        assert q.nearest is not None
        walk_ids = t.walk.lora_ids
        recall.append(len(set(walk_ids) & set(t.exact)) / max(1, len(t.exact)))
        # The exact scan agrees with numpy's nearest-point means of the same points (float32 in
        # the database: a swap of two near-equal neighbours counts against it).
        numpy_agrees.append(len(set(_top(q.nearest, mask, candidates)) & set(t.exact)) / max(1, len(t.exact)))
        style = specs.style_distance(q.style)
        r_walk, size = union_recall(q, mask, style, walk_ids, candidates, alpha, normalisation)
        r_exact, _ = union_recall(q, mask, style, t.exact, candidates, alpha, normalisation)
        union_walk.append(r_walk)
        union_exact.append(r_exact)
        union_size.append(size)
        points.append(t.walk.points_walked)
        proven.append(t.walk.proven)
        kind = by_kind.setdefault(q.kind, {"walk_s": [], "exact_s": [], "recall": []})
        kind["walk_s"].append(t.walk_s)
        kind["exact_s"].append(t.exact_s)
        kind["recall"].append(recall[-1])
    return {
        "queries": len(timed),
        "index_walk": _percentiles([t.walk_s for t in timed]),
        "exact_scan": _percentiles([t.exact_s for t in timed]),
        "speedup_p50": round(
            float(
                np.percentile([t.exact_s for t in timed], 50) / np.percentile([t.walk_s for t in timed], 50)
            ),
            2,
        ),
        f"candidate_recall_at_{candidates}": round(float(np.mean(recall)), 4),
        "candidate_recall_min": round(float(np.min(recall)), 4),
        "exact_scan_vs_numpy": round(float(np.mean(numpy_agrees)), 4),
        f"union_recall_at_{FUSED_TOP}": {
            "index_candidates": round(float(np.mean(union_walk)), 4),
            "exact_candidates": round(float(np.mean(union_exact)), 4),
            "index_min": round(float(np.min(union_walk)), 4),
        },
        "union_size_median": float(np.median(union_size)),
        "points_walked": {"median": float(np.median(points)), "p95": float(np.percentile(points, 95))},
        "walks_fell_back_to_exact": int(sum(t.walk.exact_scan for t in timed)),
        "threshold_proven_rate": round(float(np.mean(proven)), 4),
        "by_kind": {
            kind: {
                "queries": len(v["recall"]),
                "index_walk": _percentiles(v["walk_s"]),
                "exact_scan": _percentiles(v["exact_s"]),
                f"candidate_recall_at_{candidates}": round(float(np.mean(v["recall"])), 4),
            }
            for kind, v in by_kind.items()
        },
    }


async def run_size(
    server_url: str,
    n_loras: int,
    *,
    shape: SpecShape,
    n_queries: int,
    candidates: int,
    ef_search: int,
    gamma: float,
    alpha: float,
    normalisation: Normalisation,
    seed: int,
    keep: bool,
    maintenance_work_mem: str,
    progress: Progress,
) -> dict[str, Any]:
    from db.scratch import scratch_database

    specs = SyntheticSpecs(n_loras, shape, seed)
    catalog = make_catalog(n_loras, seed)
    queries = make_queries(specs, catalog, n_queries + 3, seed)
    warmup, queries = queries[:3], queries[3:]
    with scratch_database(server_url, f"bench_spec_{n_loras}", keep=keep) as url:
        load_s = await load_specs(url, specs, queries, catalog, gamma, progress)
        with psycopg.connect(url, autocommit=True) as conn:
            # A graph that fits in memory builds far faster (the server default is 64 MB; the
            # index is about 2.6 KB a point at dim 512); the
            # service's own path builds it, on a connection of its own that picks this up.
            name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET maintenance_work_mem = {}").format(
                    sql.Identifier(str(name)), sql.Literal(maintenance_work_mem)
                )
            )
        progress("index build", 0, 1)
        started = time.perf_counter()
        outcome = await spec_index.ensure_spec_index_async(url, shape.dim)
        build_s = time.perf_counter() - started
        progress("index build", 1, 1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE loras, prompts, spec_points")
            sizes = {}
            for rel in ("spec_points", spec_index.index_name(shape.dim)):
                row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (rel,)).fetchone()
                sizes[rel] = round(cast(int, row[0]) / 2**20, 1) if row else 0.0
        timed = await _time_queries(url, queries, candidates, ef_search, warmup, progress)
    return {
        "n_loras": n_loras,
        "spec_points": n_loras * shape.points_per_lora,
        **_report(timed, catalog, specs, candidates, alpha, normalisation),
        "index": {"outcome": str(outcome), "build_s": round(build_s, 1)},
        "load_and_score_s": round(load_s, 1),
        "relation_sizes_mb": sizes,
    }


def growth(sizes: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """b in time ~ points^b from the p50s: smallest to largest, and between neighbouring sizes."""

    def exponent(a: dict[str, Any], b: dict[str, Any]) -> float:
        ratio = b[path]["p50_ms"] / a[path]["p50_ms"]
        return round(float(np.log(ratio) / np.log(b["spec_points"] / a["spec_points"])), 3)

    ordered = sorted(sizes, key=lambda s: s["spec_points"])
    return {
        "overall": exponent(ordered[0], ordered[-1]) if len(ordered) > 1 else None,
        "pairwise": {
            f"{a['spec_points']}->{b['spec_points']}": exponent(a, b) for a, b in itertools.pairwise(ordered)
        },
    }


async def run_spec_search_bench(
    server_url: str,
    loras: list[int],
    *,
    shape: SpecShape | None = None,
    n_queries: int = 16,
    candidates: int = 100,
    ef_search: int = 100,
    gamma: float = 1.0,
    alpha: float = 0.5,
    normalisation: Normalisation = "rank",
    seed: int = 0,
    keep: bool = False,
    maintenance_work_mem: str = "1GB",
    progress: Progress = lambda stage, done, total: None,
) -> dict[str, Any]:
    shape = shape or SpecShape()
    started = time.perf_counter()
    sizes = []
    for n in loras:
        stage = lambda name, done, total, n=n: progress(f"{n} LoRAs: {name}", done, total)  # noqa: E731
        sizes.append(
            await run_size(
                server_url,
                n,
                shape=shape,
                n_queries=n_queries,
                candidates=candidates,
                ef_search=ef_search,
                gamma=gamma,
                alpha=alpha,
                normalisation=normalisation,
                seed=seed,
                keep=keep,
                maintenance_work_mem=maintenance_work_mem,
                progress=stage,
            )
        )
    return {
        "bench": "spec-search",
        "candidates": candidates,
        "fused_top": FUSED_TOP,
        "ef_search": ef_search,
        "walk_margin": spec_search.WALK_MARGIN,
        "maintenance_work_mem": maintenance_work_mem,
        "rkme_gamma": gamma,
        "fusion": {"alpha": alpha, "normalisation": normalisation},
        "shape": asdict(shape),
        "scores": "GMI: RKME-CLIP of the loaded spec points; style: distance to a synthetic style centre "
        "(a d_avg stand-in on the same family tree); fused by rank_fused",
        "growth_exponent": {
            "index_walk": growth(sizes, "index_walk"),
            "exact_scan": growth(sizes, "exact_scan"),
        },
        "sizes": sizes,
        "total_s": round(time.perf_counter() - started, 1),
    }
