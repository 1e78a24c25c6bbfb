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


def register_bench(bench_app: typer.Typer) -> None:
    from findlora.commands.bench_e2e import e2e_command

    bench_app.command("search")(search_cmd)
    bench_app.command("throughput")(throughput_cmd)
    bench_app.command("e2e")(e2e_command(emit_json))
