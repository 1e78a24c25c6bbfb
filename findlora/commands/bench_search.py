"""`findlora bench search|beam|crossover|spec-search|throughput|e2e`: search at catalog scale, the
walk's beam by size, where the walk overtakes the exact scan, and the batched encoder path (added
to the `bench` group by findlora/commands/bench.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from findlora.console import check_json_out, console, fail, run, stage_bars


def memory_read_gb_s(rows: int = 1_000_000, dim: int = 128, repeats: int = 5) -> float:
    """Memory read bandwidth as the numpy peer sees it: the best of a few matrix-vector products
    over a 512 MB float32 matrix. Brute-force scans move with it and a latency-bound search does
    not, so ratios between them differ between machines by about this figure."""
    import numpy as np  # lazily: the CLI starts in the bot image, which has no numpy

    matrix = np.ones((rows, dim), dtype=np.float32)
    vector = np.ones(dim, dtype=np.float32)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matrix @ vector
        best = min(best, time.perf_counter() - start)
    return round(matrix.nbytes / best / 1e9, 1)


def run_context() -> dict[str, Any]:
    """Where a benchmark ran: the machine's load (1/5/15-minute averages at the end of the run;
    another job beside a benchmark shows here), its cores, its memory bandwidth, the time and the
    commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout)
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "memory_read_gb_s": memory_read_gb_s(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes": dirty,
    }


def emit_json(result: dict[str, Any], path: Path | None, indent: int = 2) -> None:
    result.setdefault("run", run_context())
    text = json.dumps(result, indent=indent)
    if path is None:
        print(text)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:  # checked before the run; a full disk can still refuse it: keep the result
        print(text)
        fail(f"--json {path}: cannot write ({exc.strerror or exc}); the result is on stdout above")
    console.print(f"wrote {path}", markup=False)


async def _search(
    n_loras: int,
    n_refs: int,
    n_queries: int,
    k: int,
    options: Any,
    seed: int,
    keep: bool,
    layouts: list[str],
    peers: str,
    peer_budget_gb: float,
    exhaustive_queries: int | None,
    centroid_index: str,
    references_mb: int,
    order: str,
) -> dict[str, Any]:
    from db.embedded import database_url
    from db.scratch import scratch_database
    from inference_service.config import Settings
    from lab.bench.search_bench import run_search_bench

    settings = Settings()
    server = database_url(settings.database_url, settings.pg_dir)

    def scratch(layout: str) -> AbstractContextManager[str]:
        return scratch_database(server, f"bench_search_{n_loras}_{layout.replace('-', '_')}", keep=keep)

    with (
        scratch(layouts[0]) as url,
        stage_bars() as progress,
    ):
        return await run_search_bench(
            url,
            n_loras=n_loras,
            n_refs=n_refs,
            n_queries=n_queries,
            k=k,
            options=options,
            seed=seed,
            layouts=layouts,
            scratch=scratch,
            peers=peers,
            peer_budget_bytes=int(peer_budget_gb * 1e9) if peer_budget_gb > 0 else None,
            exhaustive_queries=exhaustive_queries,
            centroid_index=centroid_index,
            references_mb=references_mb,
            order=order,
            progress=progress,
        )


def _layouts(text: str) -> list[str]:
    from lab.bench.load import LAYOUTS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYOUTS]
    if not names or unknown or len(set(names)) != len(names):
        raise typer.BadParameter(
            f"give distinct layouts among {', '.join(LAYOUTS)} (got {text!r})", param_hint="--layouts"
        )
    return names


def search_cmd(
    loras: int = typer.Option(1000, "--loras", min=10, help="Synthetic catalog size."),
    refs: int = typer.Option(30, "--refs", min=2, help="References per LoRA (|S|)."),
    queries: int = typer.Option(40, "--queries", min=4, help="Queries, each timed on every path."),
    top_k: int = typer.Option(10, "--top-k", min=1, help="k of the ranking and of recall@k."),
    ef_search: int = typer.Option(800, "--ef-search", min=10, help="HNSW ef_search."),
    memory_ef_search: int = typer.Option(
        800, "--memory-ef-search", min=10, help="efSearch of the in-memory index's faiss walk."
    ),
    exact_below: int = typer.Option(2000, "--exact-below", help="Exact centroid scan below this size."),
    seed: int = typer.Option(0, "--seed"),
    keep: bool = typer.Option(False, "--keep", help="Keep the benchmark databases."),
    layouts: str = typer.Option(
        "product",
        "--layouts",
        help="Storage layouts, comma-separated, each loaded into its own database: product (as"
        " migrated), halfvec, float32 (the references' type), halfvec-centroids (centroids too).",
    ),
    peers: str = typer.Option(
        "auto",
        "--peers",
        help="In-memory peers (numpy exhaustive, faiss HNSW + rerank): auto runs those whose arrays"
        " fit the memory budget, on runs both, off none.",
    ),
    peer_budget_gb: float = typer.Option(
        0.0,
        "--peer-budget-gb",
        min=0.0,
        help="Memory budget of --peers auto; 0: a quarter of physical memory.",
    ),
    exhaustive_queries: int = typer.Option(
        -1,
        "--exhaustive-queries",
        min=-1,
        help="Queries also timed on the SQL exhaustive scan; -1: all up to 100k LoRAs, 4 beyond.",
    ),
    centroid_index: str = typer.Option(
        "both",
        "--centroid-index",
        help="The two-stage search's candidates: memory (the service's in-memory index, its"
        " default), pgvector (the HNSW walk in PostgreSQL; memory leaves that index unbuilt), or"
        " both, timed side by side.",
    ),
    references_mb: int = typer.Option(
        4096,
        "--references-mb",
        min=0,
        help="The in-memory index holds the references (exact scoring in memory) up to this many MB,"
        " as FINDLORA_CENTROID_INDEX_REFERENCES_MB; 0: PostgreSQL scores.",
    ),
    order: str = typer.Option(
        "blocks",
        "--order",
        help="blocks: each path answers every query in turn (its steady state); interleaved: each"
        " query on every path in turn (each path on caches the one before it filled).",
    ),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
) -> None:
    """The two-stage search against SQL exhaustive, numpy exhaustive and faiss HNSW + rerank on one
    synthetic catalog: latency, recall against the exact truth, memory, build time, layouts."""
    from inference_service.search.centroids import TwoStageOptions
    from lab.bench.search_bench import CENTROID_INDEXES, ORDERS

    if order not in ORDERS:
        raise typer.BadParameter(f"use {', '.join(ORDERS)}", param_hint="--order")
    if peers not in ("auto", "on", "off"):
        raise typer.BadParameter("use auto, on or off", param_hint="--peers")
    if centroid_index not in CENTROID_INDEXES:
        raise typer.BadParameter(f"use {', '.join(CENTROID_INDEXES)}", param_hint="--centroid-index")
    check_json_out(json_file)
    result = run(
        _search(
            loras,
            refs,
            queries,
            top_k,
            TwoStageOptions(ef_search=ef_search, exact_below=exact_below, memory_ef_search=memory_ef_search),
            seed,
            keep,
            _layouts(layouts),
            peers,
            peer_budget_gb,
            None if exhaustive_queries < 0 else exhaustive_queries,
            centroid_index,
            references_mb,
            order,
        )
    )
    emit_json(result, json_file)


def throughput_cmd(
    seconds: float = typer.Option(6.0, "--seconds", min=0.5, help="Measured time per configuration."),
    concurrency: str = typer.Option("1,8,32", "--concurrency", help="Concurrent callers, comma-separated."),
    image_px: int = typer.Option(512, "--image-px", help="Side of the square query images."),
    max_batch: int = typer.Option(32, "--max-batch"),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms"),
    threads: int = typer.Option(0, "--threads", help="torch threads; 0 keeps torch's default."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
) -> None:
    """Images/s of the encoder path at each concurrency, with and without dynamic batching."""
    from lab.bench.throughput import run_throughput_bench

    levels = _concurrency_levels(concurrency)
    check_json_out(json_file)
    result = run(
        run_throughput_bench(
            levels=levels,
            seconds=seconds,
            image_px=image_px,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            threads=threads,
        )
    )
    emit_json(result, json_file)


def _concurrency_levels(text: str) -> list[int]:
    """--concurrency, parsed before the run: the report needs at least one level, each >= 1."""
    hint = "--concurrency"
    try:
        levels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise typer.BadParameter(f"comma-separated integers, not {text!r}", param_hint=hint) from None
    if not levels or min(levels) < 1:
        raise typer.BadParameter(f"each level must be at least 1, not {text!r}", param_hint=hint)
    return levels


def spec_search_cmd(
    loras: str = typer.Option("1000,3000,10000", "--loras", help="Catalog sizes, comma-separated."),
    points: int = typer.Option(30, "--points-per-lora", min=2, max=200, help="Spec points per LoRA."),
    dim: int = typer.Option(512, "--dim", min=8, max=2000, help="CLIP feature dimension."),
    queries: int = typer.Option(16, "--queries", min=4, help="Queries per size, each on both paths."),
    candidates: int = typer.Option(100, "--candidates", min=1, help="GMI candidates (fusion_candidates)."),
    ef_search: int = typer.Option(100, "--ef-search", min=10, max=1000, help="HNSW ef_search (floor)."),
    seed: int = typer.Option(0, "--seed"),
    keep: bool = typer.Option(False, "--keep", help="Keep the benchmark databases."),
    build_memory: str = typer.Option(
        "1GB", "--maintenance-work-mem", help="The index builds' maintenance_work_mem (about 2.6 KB a point)."
    ),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
) -> None:
    """The fused search's GMI candidate step: HNSW walks vs the exact scan over synthetic spec
    points at several sizes: p50/p95, growth exponent, candidate and union recall."""
    try:
        sizes = [int(n) for n in loras.split(",") if n.strip()]
    except ValueError:
        raise typer.BadParameter(f"--loras must be comma-separated integers, not {loras!r}") from None
    if not sizes or min(sizes) < 10:
        raise typer.BadParameter("--loras needs sizes of at least 10 LoRAs")
    check_json_out(json_file)
    result = _spec_search(sizes, points, dim, queries, candidates, ef_search, seed, keep, build_memory)
    emit_json(run(result), json_file)


async def _spec_search(
    sizes: list[int],
    points: int,
    dim: int,
    queries: int,
    candidates: int,
    ef_search: int,
    seed: int,
    keep: bool,
    build_memory: str,
) -> dict[str, Any]:

    from db.embedded import database_url
    from inference_service.config import Settings
    from lab.bench.spec_catalog import SpecShape
    from lab.bench.spec_search import run_spec_search_bench

    settings = Settings()
    server = database_url(settings.database_url, settings.pg_dir)
    with stage_bars() as progress:
        return await run_spec_search_bench(
            server,
            sizes,
            shape=SpecShape(dim=dim, points_per_lora=points),
            n_queries=queries,
            candidates=candidates,
            ef_search=ef_search,
            gamma=settings.rkme_gamma,
            alpha=settings.fusion_alpha,
            normalisation=settings.fusion_normalisation,
            seed=seed,
            keep=keep,
            maintenance_work_mem=build_memory,
            progress=progress,
        )


def beam_cmd(
    loras: str = typer.Option("20000,100000", "--loras", help="Catalog sizes, comma-separated."),
    beams: str = typer.Option(
        "800,400", "--beams", help="efSearch values, comma-separated; the first is the ratios' baseline."
    ),
    graphs: str = typer.Option(
        "full",
        "--graphs",
        help="Level-0 link lists, comma-separated: full (the service's) and/or pruned (faiss's);"
        " the first is the ratios' baseline.",
    ),
    refs: int = typer.Option(30, "--refs", min=2, help="References per LoRA (|S|)."),
    queries: int = typer.Option(200, "--queries", min=4, help="Queries per size, each on every beam."),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Timed passes per beam, interleaved."),
    seed: int = typer.Option(0, "--seed", help="Synthetic catalog seed (bench search uses 0)."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
) -> None:
    """The in-memory walk's beam (FINDLORA_SEARCH_MEMORY_EF_SEARCH) and graph at several catalog sizes:
    recall@10 and latency of bench search's faiss peer for each graph and efSearch, in one run,
    without a database."""
    from lab.bench.beam import GRAPHS, references_dtype, run_beam_bench
    from lab.bench.synthetic import Shape

    try:
        sizes = [int(n) for n in loras.split(",") if n.strip()]
        efs = [int(b) for b in beams.split(",") if b.strip()]
    except ValueError:
        raise typer.BadParameter("--loras and --beams take comma-separated integers") from None
    if not sizes or min(sizes) < 10:
        raise typer.BadParameter("--loras needs sizes of at least 10 LoRAs", param_hint="--loras")
    if not efs or min(efs) < 10 or len(set(efs)) != len(efs):
        raise typer.BadParameter("--beams needs distinct values of at least 10", param_hint="--beams")
    kinds = [g.strip() for g in graphs.split(",") if g.strip()]
    if not kinds or len(set(kinds)) != len(kinds) or not set(kinds) <= set(GRAPHS):
        raise typer.BadParameter(
            f"--graphs takes distinct names from {', '.join(GRAPHS)}", param_hint="--graphs"
        )
    for n in sizes:
        try:
            references_dtype(n, refs, Shape().dim)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--loras") from None
    check_json_out(json_file)
    with stage_bars() as progress:
        result = run(
            run_beam_bench(
                sizes,
                efs,
                graphs=kinds,
                n_refs=refs,
                n_queries=queries,
                repeats=repeats,
                seed=seed,
                progress=progress,
            )
        )
    emit_json(result, json_file)


def crossover_cmd(
    loras: str = typer.Option(
        "50000,100000,150000,200000", "--loras", help="Catalog sizes, comma-separated."
    ),
    refs: int = typer.Option(30, "--refs", min=2, help="References per LoRA (|S|)."),
    queries: int = typer.Option(
        200, "--queries", min=4, help="Queries per size (single and filtered timed)."
    ),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Timed passes, walk and scan alternating."),
    seed: int = typer.Option(0, "--seed", help="Synthetic catalog seed (bench search uses 0)."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
) -> None:
    """Where the service's HNSW walk overtakes its exact centroid scan
    (FINDLORA_CENTROID_INDEX_EXACT_BELOW): the service's in-memory search at several catalog sizes,
    each query ranked both ways in one run, without a database."""
    from lab.bench.crossover import fits, run_crossover_bench

    try:
        sizes = [int(n) for n in loras.split(",") if n.strip()]
    except ValueError:
        raise typer.BadParameter("--loras takes comma-separated integers", param_hint="--loras") from None
    if not sizes or min(sizes) < 10 or len(set(sizes)) != len(sizes):
        raise typer.BadParameter("--loras needs distinct sizes of at least 10 LoRAs", param_hint="--loras")
    too_big = [n for n in sizes if not fits(n, refs)]
    if too_big:
        raise typer.BadParameter(
            f"{too_big[0]} LoRAs x {refs} references do not fit this machine's memory as float32",
            param_hint="--loras",
        )
    check_json_out(json_file)
    with stage_bars() as progress:
        result = run(
            run_crossover_bench(
                sizes, n_refs=refs, n_queries=queries, repeats=repeats, seed=seed, progress=progress
            )
        )
    emit_json(result, json_file)


def register_bench(bench_app: typer.Typer) -> None:
    from findlora.commands.bench_e2e import e2e_command

    bench_app.command("search")(search_cmd)
    bench_app.command("beam")(beam_cmd)
    bench_app.command("crossover")(crossover_cmd)
    bench_app.command("spec-search")(spec_search_cmd)
    bench_app.command("throughput")(throughput_cmd)
    bench_app.command("e2e")(e2e_command(emit_json))
