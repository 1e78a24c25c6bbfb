"""`findlora bench e2e`: /findlora as the bot sees it (added to `bench` by
bench_search.register_bench, which hands it the shared JSON writer)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from findlora.console import check_json_out, console, run, stage_bars

EmitJson = Callable[[dict[str, Any], Path | None], None]


async def _e2e(
    n_loras: int, n_refs: int, n_queries: int, seed: int, cache_dir: Path, keep: bool
) -> dict[str, Any]:
    from db.embedded import database_url
    from db.scratch import scratch_database
    from inference_service.config import Settings
    from lab.bench.e2e import run_e2e_bench

    settings = Settings()
    server = database_url(settings.database_url, settings.pg_dir)
    with (
        scratch_database(server, f"bench_e2e_{n_loras}", keep=keep) as url,
        tempfile.TemporaryDirectory(prefix="findlora-bench-e2e-") as data_dir,
        stage_bars() as progress,
    ):
        return await run_e2e_bench(
            url,
            data_dir=Path(data_dir),
            zoo_dir=cache_dir / "e2e-zoo",
            n_loras=n_loras,
            n_refs=n_refs,
            n_queries=n_queries,
            seed=seed,
            progress=progress,
        )


def e2e_command(emit_json: EmitJson) -> Callable[..., None]:
    """The `bench e2e` command, writing its JSON with `emit_json`."""

    def e2e_cmd(
        loras: int = typer.Option(10000, "--loras", min=10, help="Synthetic catalog size."),
        refs: int = typer.Option(30, "--refs", min=2, help="References per LoRA (|S|)."),
        queries: int = typer.Option(
            40, "--queries", min=1, help="Searches of each kind (1 image, 4 images)."
        ),
        seed: int = typer.Option(0, "--seed"),
        cache_dir: Path = typer.Option(Path(".bench"), "--cache-dir", help="Where the query zoo is cached."),
        keep: bool = typer.Option(False, "--keep", help="Keep the benchmark database."),
        json_file: Path | None = typer.Option(None, "--json", help="Write the JSON here, not to stdout."),
    ) -> None:
        """Bot core -> gRPC -> service -> answer with thumbnails: p50/p95 and where the time goes."""
        from inference_service.logs import configure_logging
        from lab.bench.e2e import markdown_rows

        check_json_out(json_file)  # before the run, not after it
        configure_logging(json=False, level=30)  # the service's per-call lines would bury the result
        result = run(_e2e(loras, refs, queries, seed, cache_dir, keep))
        emit_json(result, json_file)
        if json_file is not None:  # stdout holds only the JSON otherwise
            console.print("rows for docs/benchmarks-search.md (End-to-end /findlora latency):")
            for row in markdown_rows(result):
                console.print(row, highlight=False, markup=False, soft_wrap=True)

    return e2e_cmd
