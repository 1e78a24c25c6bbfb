"""`findlora catalog import|export|reembed|adapt`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from findlora.console import check_directory, check_json_out, console, fail, run

if TYPE_CHECKING:
    from inference_service.catalog.adaptation import AdaptRun, Prepared
    from inference_service.catalog.encoders import ProgressCallback
    from inference_service.config import Settings
    from inference_service.training.adapt import AdaptOutcome

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
    async with await open_runtime(settings) as runtime:
        with _progress() as progress:
            task = progress.add_task("importing", total=None)

            def advance(slug: str, done: int, total: int) -> None:
                progress.update(task, description=f"importing {escape(slug)}", completed=done, total=total)

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
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    console.print(
        f"imported {len(report.imported)}, updated {len(report.updated)}, unchanged {len(report.unchanged)} "
        f"LoRA(s); {report.references} reference(s) embedded with {runtime.encoders.loaded.label}, "
        f"{report.dropped_by_cleansing} dropped by cleansing (Eq. 1); {report.samples_added} new sample(s)"
    )
    if report.restored:
        console.print(
            f"{len(report.restored)} unchanged LoRA(s) imported again: reference images were missing "
            f"from the blob store ({', '.join(report.restored)})",
            highlight=False,
            markup=False,
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

    async with await open_runtime(Settings()) as runtime:
        count = await export_catalog(runtime.db, runtime.blobs, directory)
    console.print(f"exported {count} LoRA(s) to {directory}", markup=False)


@catalog_app.command("export")
def export_cmd(directory: Path = typer.Argument(..., help="Empty or new directory.")) -> None:
    """Write the stored catalog in the catalog directory format."""
    # Before the database is opened: a wrong target is the user's to fix, not a traceback.
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} is a file: give a new or empty directory")
    if directory.is_dir() and any(directory.iterdir()):
        fail(f"{directory} is not empty: export into a new or empty directory")
    check_directory(directory, "catalog export")  # a file above it, or no write access
    run(_export(directory))


async def _reembed() -> None:
    from db.encoders import EncoderChanged
    from inference_service.catalog.encoders import ReferenceUnreadable
    from inference_service.catalog.importer import reembed
    from inference_service.config import Settings
    from inference_service.runtime import open_runtime

    async with await open_runtime(Settings()) as runtime:
        with _progress() as progress:
            task = progress.add_task("re-embedding", total=None)
            try:
                count = await reembed(
                    runtime.db,
                    runtime.blobs,
                    runtime.embedder,
                    lambda _, done, total: progress.update(task, completed=done, total=total),
                )
            except EncoderChanged as exc:
                fail(f"another activation made {exc.active} active while re-embedding; run it again")
            except ReferenceUnreadable as exc:
                fail(str(exc))
    console.print(f"re-embedded {count} reference(s) with {runtime.embedder.label}")


@catalog_app.command("reembed")
def reembed_cmd() -> None:
    """Recompute every stored reference embedding with the configured style encoder and make it
    the active one (running services switch to it without a restart)."""
    run(_reembed())


def _write_json(path: Path | None, payload: dict[str, object]) -> None:
    if path is None:
        return
    try:  # checked before the work (adapt_cmd); a full disk or a race can still refuse it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"--json {path}: cannot write the outcome (printed above): {exc.strerror or exc}")


def _print_outcome(result: AdaptRun) -> None:
    outcome = result.outcome
    table = Table(title="validation on held-out samples", show_edge=False)
    for column in ("", "MRR", "hit@5"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        Text(f"before ({outcome.start_label})"), f"{outcome.before:.3f}", f"{outcome.before_hit5:.2f}"
    )
    table.add_row("after adaptation", f"{outcome.after:.3f}", f"{outcome.after_hit5:.2f}")
    console.print(table)
    resumed = ", resumed from a checkpoint" if outcome.resumed else ""
    console.print(
        f"{outcome.loras} LoRAs, {len(outcome.val_samples)} held-out sample(s), {outcome.queries} queries; "
        f"{outcome.steps} steps in {outcome.seconds:.0f} s{resumed}"
    )
    colour = "green" if outcome.kept else "yellow"
    console.print(Text(outcome.reason, style=colour))
    if result.activation is not None:
        console.print(
            f"activated {result.activation.label} (was {result.activation.previous}): "
            f"{result.activation.references} reference(s) and {result.activation.loras} style summaries "
            "re-embedded; `findlora catalog adapt --rollback` returns to the previous encoder",
            highlight=False,
        )


def _activation_bar(progress: Progress) -> ProgressCallback:
    task = progress.add_task("re-embedding", total=None, visible=False)

    def advance(_: str, done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, visible=True)

    return advance


async def _rollback(json_path: Path | None) -> None:
    from db.encoders import EncoderChanged
    from inference_service.catalog.adaptation import rollback
    from inference_service.catalog.encoders import NoPreviousEncoder, ReferenceUnreadable
    from inference_service.config import Settings
    from inference_service.models.active import UnknownEncoder
    from inference_service.runtime import open_runtime

    async with await open_runtime(Settings()) as runtime:
        with _progress() as progress:
            try:
                done = await rollback(
                    runtime.db, runtime.blobs, runtime.encoders, progress=_activation_bar(progress)
                )
            except (NoPreviousEncoder, UnknownEncoder, ReferenceUnreadable) as exc:
                fail(str(exc))
            except EncoderChanged as exc:
                fail(
                    f"another activation made {exc.active} active while rolling back from "
                    f"{exc.expected}; nothing changed by the rollback: check and run it again if still wanted"
                )
    console.print(
        f"rolled back to {done.label} (from {done.previous}); {done.references} reference(s) re-embedded; "
        "the worker's automatic adaptation is paused until `findlora catalog adapt` runs by hand",
        highlight=False,
    )
    _write_json(
        json_path, {"rollback": {"from": done.previous, "to": done.label}, "automatic_adaptation": "paused"}
    )


async def _prepare(settings: Settings) -> Prepared:
    from inference_service.catalog.adaptation import AdaptError, prepare_checked
    from inference_service.catalog.encoders import ReferenceUnreadable
    from inference_service.runtime import open_runtime

    async with await open_runtime(settings) as runtime:
        try:
            return await prepare_checked(
                runtime.db,
                runtime.blobs,
                runtime.encoders,
                progress=True,
                max_references=settings.adapt_max_references,
            )
        except (AdaptError, ReferenceUnreadable) as exc:
            fail(str(exc))
        except OSError as exc:  # the blob store itself, not one reference, does not read
            fail(
                f"{exc.filename or settings.blob_dir}: cannot be read ({exc.strerror or exc}); nothing was "
                f"changed: restore the blob store ({settings.blob_dir}) or make it readable to this user"
            )


async def _finish(settings: Settings, prepared: Prepared, outcome: AdaptOutcome) -> AdaptRun:
    from inference_service.catalog.adaptation import AdaptError, finish
    from inference_service.catalog.encoders import ReferenceUnreadable
    from inference_service.runtime import open_runtime

    async with await open_runtime(settings) as runtime:
        with _progress() as progress:
            try:
                return await finish(
                    runtime.db,
                    runtime.blobs,
                    settings,
                    prepared,
                    outcome,
                    activation_progress=_activation_bar(progress),
                )
            except AdaptError as exc:
                fail(str(exc))
            except ReferenceUnreadable as exc:  # the run is not discarded: a rerun activates it
                fail(f"{exc}; the trained encoder is kept: run `findlora catalog adapt` again once fixed")


def _adapt(
    max_minutes: float, threads: int, json_path: Path | None, seed: int, max_steps: int | None
) -> None:
    """Three steps, the training between two event loops: Ctrl-C stops it at once (its checkpoint
    stays, a rerun resumes) instead of waiting for the loop to notice."""
    from inference_service.catalog.adaptation import AdaptConfig, AdaptError, train
    from inference_service.config import Settings

    settings = Settings()
    prepared = run(_prepare(settings))
    if prepared.drawn:
        console.print(prepared.drawn, highlight=False)
    config = AdaptConfig(max_minutes=max_minutes, threads=threads, seed=seed, max_steps=max_steps)
    try:
        outcome = train(prepared, settings, config, progress=True)
    except AdaptError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: the checkpoint is kept; run `findlora catalog adapt` again to resume", 130)
    try:
        result = run(_finish(settings, prepared, outcome))
    except KeyboardInterrupt:
        fail(
            "interrupted while activating: the active encoder is unchanged and the trained one is kept; "
            "run `findlora catalog adapt` again: it validates and activates it without training again "
            "(unless the catalog changed meanwhile)",
            130,
        )
    _print_outcome(result)
    _write_json(json_path, result.as_dict())


@catalog_app.command("adapt")
def adapt_cmd(
    max_minutes: float = typer.Option(
        5.0, min=0.1, help="Whole budget: loading, training, validation, re-embedding."
    ),
    threads: int = typer.Option(0, min=0, help="torch threads for training; 0 keeps torch's default."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the outcome (before/after, why) here."),
    rollback: bool = typer.Option(False, "--rollback", help="Reactivate the previous encoder instead."),
    seed: int = typer.Option(0, help="Seed of training (the held-out samples do not depend on it)."),
    max_steps: int | None = typer.Option(None, min=1, help="Cap on fine-tuning steps."),
) -> None:
    """Fine-tune the active style encoder on the catalog's own references, validate on held-out
    samples, and activate it only if validation MRR improves (an interrupted run resumes)."""
    check_json_out(json_path)  # before training, not after it
    if rollback:
        run(_rollback(json_path))
    else:
        _adapt(max_minutes, threads, json_path, seed, max_steps)


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
