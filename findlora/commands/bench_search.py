"""`findlora bench search|throughput`: search at catalog scale and the batched encoder path
(added to the `bench` group by findlora/commands/bench.py)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from findlora.console import console, run


def run_context() -> dict[str, Any]:
    """Where a benchmark ran: the machine's load (1/5/15-minute averages at the end of the run;
    another job beside a benchmark shows here), its cores, the time and the commit."""
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
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes": dirty,
    }


def emit_json(result: dict[str, Any], path: Path | None, indent: int = 2) -> None:
    result.setdefault("run", run_context())
    text = json.dumps(result, indent=indent)
    if path is None:
        print(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {path}")


async def _search(
    n_loras: int, n_refs: int, n_queries: int, k: int, ef_search: int, exact_below: int, seed: int, keep: bool
) -> dict[str, Any]:
    from rich.progress import Progress

    from db.embedded import database_url
    from db.scratch import scratch_database
    from inference_service.config import Settings
    from inference_service.search.centroids import TwoStageOptions
    from lab.bench.search_bench import run_search_bench

    settings = Settings()
    server = database_url(settings.database_url, settings.pg_dir)
    with (
        scratch_database(server, f"bench_search_{n_loras}", keep=keep) as url,
        Progress(console=console, transient=True) as bar,
    ):
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        return await run_search_bench(
            url,
            n_loras=n_loras,
            n_refs=n_refs,
            n_queries=n_queries,
            k=k,
            options=TwoStageOptions(ef_search=ef_search, exact_below=exact_below),
            seed=seed,
            progress=progress,
        )


def search_cmd(
    loras: int = typer.Option(1000, "--loras", min=10, help="Synthetic catalog size."),
    refs: int = typer.Option(30, "--refs", min=2, help="References per LoRA (|S|)."),
    queries: int = typer.Option(40, "--queries", min=4, help="Queries, each timed on both paths."),
    top_k: int = typer.Option(10, "--top-k", min=1, help="k of the ranking and of recall@k."),
    ef_search: int = typer.Option(400, "--ef-search", min=10, help="HNSW ef_search."),
    exact_below: int = typer.Option(2000, "--exact-below", help="Exact centroid scan below this size."),
    seed: int = typer.Option(0, "--seed"),
    keep: bool = typer.Option(False, "--keep", help="Keep the benchmark database."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
) -> None:
    """Exhaustive d_avg vs two-stage search on a synthetic catalog: latency, recall, index build."""
    emit_json(run(_search(loras, refs, queries, top_k, ef_search, exact_below, seed, keep)), json_file)


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

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
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
    from typing import cast

    from rich.progress import Progress

    from db.embedded import database_url
    from inference_service.config import Settings
    from inference_service.scoring.fusion import Normalisation
    from lab.bench.spec_search import SpecShape, run_spec_search_bench

    settings = Settings()
    server = database_url(settings.database_url, settings.pg_dir)
    with Progress(console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        return await run_spec_search_bench(
            server,
            sizes,
            shape=SpecShape(dim=dim, points_per_lora=points),
            n_queries=queries,
            candidates=candidates,
            ef_search=ef_search,
            gamma=settings.rkme_gamma,
            alpha=settings.fusion_alpha,
            normalisation=cast(Normalisation, settings.fusion_normalisation),
            seed=seed,
            keep=keep,
            maintenance_work_mem=build_memory,
            progress=progress,
        )


def register_bench(bench_app: typer.Typer) -> None:
    bench_app.command("search")(search_cmd)
    bench_app.command("spec-search")(spec_search_cmd)
    bench_app.command("throughput")(throughput_cmd)
