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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import sql

from db import spec_index, spec_search
from db.database import Database
from db.filters import Filters
from findlora_client.base_models import filter_group
from inference_service.catalog.platform_prompts import PLATFORM_PROMPTS
from inference_service.scoring.fusion import Normalisation, rank_fused
from lab.bench.load import BASE_MODELS, BASE_WEIGHTS, NSFW_FRACTION, TAKEN_DOWN_FRACTION

Progress = Callable[[str, int, int], None]
FUSED_TOP = 10


@dataclass(frozen=True)
class SpecShape:
    dim: int = 512
    points_per_lora: int = 30
    style_dim: int = 128
    alpha: float = 1.0  # spectrum decay of the noise
    family_size: int = 5  # lookalike LoRAs per family, on average
    families_per_group: int = 20  # families per group of related styles
    family_spread: float = 0.5  # family centre around its group's
    lora_spread: float = 0.4  # LoRA centre around its family's
    point_spread: float = 0.6  # spec points (and query images) around their LoRA's centre
    style_spread: float = 0.5  # the query's style embedding around its LoRA's style centre


class SyntheticSpecs:
    """LoRA centres in the CLIP and the style space on one family tree; spec points are drawn
    per chunk from a seed of their own, so the loader and the scorer see the same points."""

    def __init__(self, n_loras: int, shape: SpecShape, seed: int) -> None:
        self.n_loras, self.shape, self.seed = n_loras, shape, seed
        rng = np.random.default_rng(seed)
        n_families = max(1, n_loras // shape.family_size)
        n_groups = max(1, n_families // shape.families_per_group)
        group_of_family = rng.integers(0, n_groups, n_families)
        family_of_lora = rng.integers(0, n_families, n_loras)
        self.spaces = {}
        for name, dim in (("clip", shape.dim), ("style", shape.style_dim)):
            lam = np.arange(1, dim + 1, dtype=np.float64) ** -shape.alpha
            scale = np.sqrt(lam / lam.sum())
            basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
            groups = _unit(rng.standard_normal((n_groups, dim)))
            families = _unit(
                groups[group_of_family] + shape.family_spread * self._noise(rng, n_families, scale, basis)
            )
            centres = families[family_of_lora] + shape.lora_spread * self._noise(rng, n_loras, scale, basis)
            self.spaces[name] = (centres, scale, basis)

    @staticmethod
    def _noise(rng: np.random.Generator, n: int, scale: np.ndarray, basis: np.ndarray) -> np.ndarray:
        out: np.ndarray = (rng.standard_normal((n, len(scale))) * scale) @ basis.T
        return out

    def _around(self, space: str, lora: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
        centres, scale, basis = self.spaces[space]
        return _unit(centres[lora] + spread * self._noise(rng, len(lora), scale, basis)).astype(np.float32)

    def points(self, start: int, stop: int) -> np.ndarray:
        """(stop-start, points_per_lora, dim) float32 unit spec points of LoRAs start..stop-1."""
        p = self.shape.points_per_lora
        lora = np.repeat(np.arange(start, stop), p)
        rng = np.random.default_rng([self.seed, 1, start])
        return self._around("clip", lora, self.shape.point_spread, rng).reshape(stop - start, p, -1)

    def query_images(self, owner: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """Unseen images of the owner's style: drawn as its spec points are."""
        return self._around("clip", np.full(count, owner), self.shape.point_spread, rng)

    def query_style(self, owner: int, rng: np.random.Generator) -> np.ndarray:
        style: np.ndarray = self._around("style", np.array([owner]), self.shape.style_spread, rng)[0]
        return style

    def style_distance(self, style: np.ndarray) -> np.ndarray:
        centres = _unit(self.spaces["style"][0])
        out: np.ndarray = np.linalg.norm(centres - style, axis=1)
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


@dataclass
class BenchQuery:
    kind: str  # single | multi | filtered
    owner: int
    images: np.ndarray  # (Q, dim)
    style: np.ndarray
    filters: Filters
    nearest: np.ndarray | None = None  # (n_loras,) mean over images of the nearest spec point
    rkme: np.ndarray | None = None  # (n_loras,) RKME-CLIP of every LoRA


@dataclass(frozen=True)
class Catalog:
    base_model: list[str]
    nsfw: np.ndarray
    active: np.ndarray

    def passes(self, filters: Filters) -> np.ndarray:
        """db.filters.LORA_FILTER in numpy."""
        group = filter_group(filters.base_model)
        base = np.array(
            [
                not group.ids or b in group.ids or (group.others and b.startswith("other:"))
                for b in self.base_model
            ]
        )
        out: np.ndarray = self.active & base & (filters.allow_nsfw | ~self.nsfw)
        return out


def make_queries(specs: SyntheticSpecs, catalog: Catalog, n: int, seed: int) -> list[BenchQuery]:
    """Half single-image queries, a quarter with 2-3 images of one style, a quarter filtered to
    the owner's base model without NSFW."""
    rng = np.random.default_rng([seed, 2])
    owners = rng.choice(np.flatnonzero(catalog.active & ~catalog.nsfw), size=n)
    queries = []
    for j, owner in enumerate(owners.tolist()):
        kind = ("single", "multi", "single", "filtered")[j % 4]
        count = int(rng.integers(2, 4)) if kind == "multi" else 1
        filters = (
            Filters(base_model=catalog.base_model[owner]) if kind == "filtered" else Filters(allow_nsfw=True)
        )
        images = specs.query_images(owner, count, rng)
        queries.append(BenchQuery(kind, owner, images, specs.query_style(owner, rng), filters))
    return queries


def score_chunk(points: np.ndarray, queries: list[BenchQuery], start: int, gamma: float) -> None:
    """Each query's exact nearest-point mean and RKME-CLIP for the LoRAs of one chunk.
    RKME-CLIP (inference_service.scoring.rkme.rkme_clip), batched: mean_ij k(z_i, z_j) -
    2 mean_ij k(z_i, q_j) + mean_jk k(q_j, q_k), k(a, b) = exp(-gamma |a - b|^2), unit vectors."""
    z = points.astype(np.float64)
    sq = np.maximum(2.0 - 2.0 * np.einsum("cpd,cqd->cpq", z, z), 0.0)
    spec_term = np.exp(-gamma * sq).mean(axis=(1, 2))
    stop = start + len(points)
    for query in queries:
        q = query.images.astype(np.float64)
        d2 = np.maximum(2.0 - 2.0 * np.einsum("cpd,jd->cpj", z, q), 0.0)  # (c, P, Q)
        assert query.nearest is not None
        assert query.rkme is not None
        query.nearest[start:stop] = np.sqrt(d2.min(axis=1)).mean(axis=1)
        qq = np.maximum(2.0 - 2.0 * q @ q.T, 0.0)
        query.rkme[start:stop] = (
            spec_term - 2.0 * np.exp(-gamma * d2).mean(axis=(1, 2)) + np.exp(-gamma * qq).mean()
        )


async def load_specs(
    url: str,
    specs: SyntheticSpecs,
    queries: list[BenchQuery],
    catalog: Catalog,
    gamma: float,
    progress: Progress,
) -> float:
    """LoRAs, the platform prompts and every spec point by binary COPY, scoring each chunk for
    every query on the way; returns the load's seconds (scoring included)."""
    n, p = specs.n_loras, specs.shape.points_per_lora
    for query in queries:
        query.nearest, query.rkme = np.zeros(n), np.zeros(n)
    started = time.perf_counter()
    rng = np.random.default_rng([specs.seed, 3])
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await register_vector_async(conn)
        async with conn.cursor() as cur:
            async with cur.copy("COPY loras (slug, name, base_model, nsfw, status) FROM STDIN") as copy:
                for i in range(n):
                    status = "active" if catalog.active[i] else "taken_down"
                    await copy.write_row(
                        (f"spec-{i:07d}", f"Spec {i}", catalog.base_model[i], bool(catalog.nsfw[i]), status)
                    )
            await cur.execute("SELECT id FROM loras WHERE slug LIKE 'spec-%%' ORDER BY slug")
            ids = [int(r[0]) for r in await cur.fetchall()]
            # The platform prompt set (a LoRA's points: one per prompt); the candidate step never
            # reads the text features.
            prompt_ids = []
            for local_id, text in enumerate(PLATFORM_PROMPTS[:p]):
                await cur.execute(
                    "INSERT INTO prompts (lora_id, local_id, text, text_feature)"
                    " VALUES (NULL, %s, %s, %s) RETURNING id",
                    (local_id, text, _unit(rng.standard_normal(8)).astype(np.float32)),
                )
                row = await cur.fetchone()
                assert row is not None
                prompt_ids.append(int(row[0]))
            chunk = 500
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                points = specs.points(start, stop)
                async with cur.copy(
                    "COPY spec_points (lora_id, prompt_id, n, blob_key, image_feature)"
                    " FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "int8", "int4", "text", "vector"])
                    for lora, lora_points in zip(ids[start:stop], points, strict=True):
                        for j, point in enumerate(lora_points):
                            await copy.write_row(
                                (lora, prompt_ids[j % len(prompt_ids)], j // len(prompt_ids), "", point)
                            )
                score_chunk(points, queries, start, gamma)
                progress("load + score", stop, n)
        await conn.commit()
    return time.perf_counter() - started


def make_catalog(n: int, seed: int) -> Catalog:
    rng = np.random.default_rng([seed, 4])
    base = [BASE_MODELS[i] for i in rng.choice(len(BASE_MODELS), n, p=BASE_WEIGHTS)]
    return Catalog(base, rng.random(n) < NSFW_FRACTION, rng.random(n) >= TAKEN_DOWN_FRACTION)


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
    fused = rank_fused(
        {i: d_all[i] for i in union}, {i: r_all[i] for i in union}, alpha, normalisation, FUSED_TOP
    )
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
    shape: SpecShape = SpecShape(),
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
