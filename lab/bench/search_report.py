"""`bench search`'s report: per-path latency, recall and ratios from the timed rows
(lab/bench/search_bench.py runs the paths; this module only summarises them)."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inference_service.scoring.two_stage import RankStats
from inference_service.search.centroids import TwoStageOptions
from lab.bench.load import LoadedCatalog
from lab.bench.search_peers import KINDS, PeerPlan, Query, Ranked
from lab.bench.synthetic import Shape, calibration


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
    memory_index: dict[str, Any] = field(default_factory=dict)  # build seconds, bytes, rows


def percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
    }


def mb(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


def rss_mb(pid: int | None = None) -> float:
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
        **percentiles([r.seconds for r in rows]),
        f"recall_at_{k}": round(float(np.mean(recall)), 4),
        "exact_match_rate": round(float(np.mean(exact)), 4),
        "by_kind": {},
    }
    for kind in KINDS:
        picked = [(r, rc) for r, rc in zip(rows, recall, strict=True) if r.query.kind == kind]
        if picked:
            summary["by_kind"][kind] = {
                "queries": len(picked),
                **percentiles([r.seconds for r, _ in picked]),
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


def build_report(
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
        memory = run.memory_index
        pgvector = (0.0, run.loaded.index_build_s, "pgvector HNSW")
        two_stage = (memory["memory_mb"], memory["build_s"], "memory index") if memory else pgvector
        summaries = ("reference_images", "lora_style_summary")
        for path, relations, (held_mb, build, candidates_from) in (
            ("two_stage", summaries, two_stage),
            ("two_stage_pgvector", summaries, pgvector),
            ("exhaustive_sql", ("reference_images", "loras"), (0.0, 0.0, "")),
        ):
            rows = run.passes["warm"].get(path, [])
            if rows:
                summary = _with_ratio(path_summary(rows, truth, k), reference)
                summary["memory_mb"] = round(sum(sizes[r] for r in relations) + held_mb, 1)
                summary["build_s"] = round(run.loaded.load_s + build, 2)
                summary["candidates_from"] = candidates_from
                paths[f"{path}[{layout}]"] = summary
        layouts[layout] = {
            "column_types": run.loaded.column_types,
            "load_s": round(run.loaded.load_s, 2),
            "index_build_s": round(run.loaded.index_build_s, 2),
            "index_build_maintenance_work_mem": run.loaded.index_build_memory,
            "relation_sizes_mb": sizes,
            "memory_index": run.memory_index or None,
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
            "budget_mb": mb(plan.budget_bytes),
            "needs_mb": {name: mb(b) for name, b in plan.needs_bytes.items()},
            "references_held": plan.ref_dtype or "none",
        },
        # The headline figures of the first layout, as the bench has always reported them.
        **_headline(warm, first.passes["cold"], truth, k, reference),
        "load_s": round(first.loaded.load_s, 2),
        "index_build_s": round(first.loaded.index_build_s, 2),
        "relation_sizes_mb": first.loaded.sizes_mb,
        "server": first.server,
        "rss_mb": {
            "bench_process_peak": round(rss_mb(), 1),
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
        "cold": {"two_stage": percentiles([r.seconds for r in cold["two_stage"]])},
    }
    if ex:
        out["exhaustive"] = {"queries": len(ex), **percentiles([r.seconds for r in ex])}
        paired = percentiles([r.seconds for r in two if r.j in both])
        out["speedup_p50"] = round(out["exhaustive"]["p50_ms"] / paired["p50_ms"], 2)
        cold_ex = percentiles([r.seconds for r in cold["exhaustive_sql"]])
        cold_two = percentiles([r.seconds for r in cold["two_stage"] if r.j in both])
        out["cold"]["exhaustive"] = cold_ex
        out["cold"]["speedup_p50"] = round(cold_ex["p50_ms"] / cold_two["p50_ms"], 2)
    out["cold"]["two_stage_single"] = percentiles(
        [r.seconds for r in cold["two_stage"] if r.query.kind == "single"]
    )
    return out
