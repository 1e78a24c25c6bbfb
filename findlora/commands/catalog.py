"""`findlora catalog import|export|reembed`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from findlora.console import console, run

catalog_app = typer.Typer(help="Import and export catalogs (docs/design.md 6 format).", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


async def _import(directory: Path, update: bool) -> None:
    from inference_service.catalog.importer import import_catalog
    from inference_service.config import Settings
    from inference_service.runtime import open_runtime

    settings = Settings()
    runtime = await open_runtime(settings)
    try:
        with _progress() as progress:
            task = progress.add_task("importing", total=None)

            def advance(slug: str, done: int, total: int) -> None:
                progress.update(task, description=f"importing {slug}", completed=done, total=total)

            report = await import_catalog(
                directory,
                runtime.db,
                runtime.blobs,
                runtime.encoders,
                cleansing_threshold=settings.cleansing_threshold,
                thumb_px=settings.thumbnail_px,
                update=update,
                progress=advance,
                gmi=runtime.gmi,
            )
    finally:
        await runtime.close()
    console.print(
        f"imported {len(report.imported)}, updated {len(report.updated)}, unchanged {len(report.unchanged)} "
        f"LoRA(s); {report.references} reference(s) embedded with {runtime.encoders.loaded.label}, "
        f"{report.dropped_by_cleansing} dropped by cleansing (Eq. 1); {report.samples_added} new sample(s)"
    )
    if report.specs or runtime.gmi is not None:
        console.print(f"{report.specs} GMI spec(s) embedded with {runtime.gmi.label if runtime.gmi else ''}")
    if report.specs_skipped:
        console.print(
            f"[yellow]{report.specs_skipped} LoRA spec(s) not imported: set FINDLORA_GMI=1 "
            "(and a CLIP model) to embed them[/]"
        )


@catalog_app.command("import")
def import_cmd(
    directory: Path = typer.Argument(..., help="Catalog directory."),
    update: bool = typer.Option(False, help="Replace LoRAs whose catalog entry changed."),
) -> None:
    """Validate a catalog directory, then import it LoRA by LoRA (idempotent, resumable)."""
    run(_import(directory, update))


async def _export(directory: Path) -> None:
    from inference_service.catalog.exporter import export_catalog
    from inference_service.config import Settings
    from inference_service.runtime import open_runtime

    runtime = await open_runtime(Settings())
    try:
        count = await export_catalog(runtime.db, runtime.blobs, directory)
    finally:
        await runtime.close()
    console.print(f"exported {count} LoRA(s) to {directory}")


@catalog_app.command("export")
def export_cmd(directory: Path = typer.Argument(..., help="Empty or new directory.")) -> None:
    """Write the stored catalog in the catalog directory format."""
    run(_export(directory))


async def _reembed() -> None:
    from inference_service.catalog.importer import reembed
    from inference_service.config import Settings
    from inference_service.runtime import open_runtime

    runtime = await open_runtime(Settings())
    try:
        with _progress() as progress:
            task = progress.add_task("re-embedding", total=None)
            count = await reembed(
                runtime.db,
                runtime.blobs,
                runtime.embedder,
                lambda _, done, total: progress.update(task, completed=done, total=total),
            )
    finally:
        await runtime.close()
    console.print(f"re-embedded {count} reference(s) with {runtime.embedder.label}")


@catalog_app.command("reembed")
def reembed_cmd() -> None:
    """Recompute every stored reference embedding with the configured style encoder."""
    run(_reembed())


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
