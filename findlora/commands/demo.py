"""`findlora demo`."""

from __future__ import annotations

import typer

from findlora.console import console, run


def demo(query: int = typer.Option(0, help="Which demo query image to search with.")) -> None:
    """Build a demo catalog, start the database and the service, run a real search."""
    from findlora.commands.search import results_table, write_visuals
    from inference_service.config import Settings
    from inference_service.logs import configure_logging
    from lab.demo import run_demo

    configure_logging(json=False, level=30)  # warnings only: the demo prints its own story
    settings = Settings()
    result = run(run_demo(settings, console, query))
    title = f"LoRAs ranked for {result.query.path.name}"
    console.print(results_table(result.response, title=title))
    ranks = [m.rank for m in result.response.matches if m.slug == result.query.slug]
    verdict = f"rank {ranks[0]}" if ranks else "not in the top 5"
    console.print(f"the LoRA that made the query, {result.query.slug!r}, is at {verdict}.")
    console.print(
        "Try it yourself: [bold].venv/bin/findlora serve inference[/] in one terminal, then "
        f"[bold].venv/bin/findlora search {result.query.path}[/] in another."
    )
    out = settings.data_dir / "demo-results"
    out.mkdir(parents=True, exist_ok=True)
    sheet, html = out / "results.png", out / "results.html"
    write_visuals(
        result.response, [(result.query.path.name, result.query.path.read_bytes())], sheet, html, title
    )
    console.print(f"results sheet: {sheet}", highlight=False, soft_wrap=True)
    console.print(f"results page:  {html}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
