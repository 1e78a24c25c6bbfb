"""`findlora lora register URL|FILE`, `findlora lora register-many LIST` (operators) and
`findlora serve worker` (registration jobs).

The operator command talks to the database directly, like `catalog import`: a local file is staged
into the LoRA store (so any worker can read it) and the job goes on the same queue as RegisterLora.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from findlora.console import check_writable, console, err_console, fail, run

if TYPE_CHECKING:
    from findlora_client.bulk import BulkSummary, ParsedList
    from inference_service.config import Settings
    from inference_service.registration.jobs import JobEvent, Registrations

T = TypeVar("T")
lora_app = typer.Typer(help="Manage LoRAs: register one by link or file.", no_args_is_help=True)


@asynccontextmanager
async def _registrations(settings: Settings) -> AsyncIterator[Registrations]:
    """The registration queue over the configured database, open for one command."""
    from db.database import Database
    from inference_service.registration.jobs import Registrations, make_queue_app
    from inference_service.runtime import migrated_url

    url = await migrated_url(settings)
    queue = make_queue_app(url)
    async with await Database.open(url, max_size=2) as db, queue.open_async():
        yield Registrations(db, queue, settings)


async def _register(
    source: str,
    name: str,
    slug: str,
    base_model: str,
    trigger_words: list[str],
    license_: str,
    author: str,
    nsfw: bool,
    page_url: str,
    by: str,
    wait: bool,
    run_here: bool,
) -> int:
    from findlora_client.base_models import resolve
    from inference_service.config import Settings
    from inference_service.registration.fetch import stage_local_file
    from inference_service.registration.jobs import Registration
    from inference_service.registration.lora_file import validate_lora_file
    from inference_service.registration.pipeline import STAGED_PREFIX
    from inference_service.registration.refusals import RegistrationRefused

    settings = Settings()
    family = resolve(base_model)
    if not family.known:  # kept, not refused: the file's own metadata may still tell
        console.print(f"[yellow]warning:[/] {escape(family.warning)}", highlight=False, soft_wrap=True)
    base_model = family.id
    staged = not source.startswith(("https://", "http://"))
    if staged:
        try:
            # Fail fast on the operator's own machine: header and tensors before queueing anything.
            info = validate_lora_file(Path(source), settings.registration_max_header_bytes)
            file = stage_local_file(Path(source), settings.lora_dir, settings.registration_max_bytes)
        except (RegistrationRefused, OSError) as exc:
            fail(getattr(exc, "message", None) or str(exc))
        console.print(
            f"{file.filename}: {info.key_style} LoRA, base {info.base_model or base_model or '?'}",
            markup=False,
        )
        source = STAGED_PREFIX + file.sha256
    async with _registrations(settings) as registrations:
        request = Registration(
            source_url=source,
            name=name,
            slug=slug,
            base_model=base_model,
            trigger_words=trigger_words,
            license=license_,
            author=author,
            nsfw=nsfw,
            page_url=page_url,
            requested_by=by,
        )
        job_id = await registrations.submit(request, staged=staged)
        console.print(f"job {job_id} queued")
        if not run_here:
            await _warn_without_workers(registrations, wait)
        if not wait and not run_here:
            return 0

        async def follow() -> JobEvent | None:
            last = None
            with Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(), console=console,
            ) as progress:  # fmt: skip
                task = progress.add_task("queued", total=1.0)
                async for event in registrations.watch(str(job_id)):
                    last = event
                    # The job's message names the LoRA and its file: never read as markup.
                    description = escape(f"{event.step or event.state}: {event.message}")
                    progress.update(task, completed=event.progress, description=description)
            return last

        last = await _beside_worker(follow(), settings, run_here)
    if last is None or last.state != "succeeded":
        fail(last.message if last is not None else "the job vanished")
    console.print(last.message, markup=False)
    for warning in last.lookalikes:
        console.print(
            f"[yellow]likely lookalike[/] of {escape(str(warning['slug']))}: centroid distance "
            f"{warning['distance']:.4f} < threshold {warning['threshold']:.4f}"
        )
    return 0


async def _warn_without_workers(registrations: Registrations, wait: bool) -> None:
    """With no live worker (counted as `findlora status` does), a queued job waits silently for
    one: say so, and what runs it."""
    from db.status import database_status

    alive = registrations.settings.worker_alive_seconds  # as ServiceStatus counts them
    if (await registrations.db.run(database_status, alive)).live_workers:
        return
    then = (
        "this command waits until one starts (Ctrl-C stops waiting; queued jobs stay queued)"
        if wait
        else "queued jobs wait until one starts"
    )
    err_console.print(
        f"[yellow]warning:[/] no registration worker is running, {then}: start one with "
        "`findlora serve worker` (GPU recommended), or run the same command with --run-here",
        highlight=False,
        soft_wrap=True,
    )


async def _beside_worker(follow: Coroutine[Any, Any, T], settings: Settings, run_here: bool) -> T:
    """Follow jobs; with --run-here, beside a worker in this process that runs every queued job
    and then ends. A worker that cannot start (no GPU, a model missing) ends the command with its
    error instead of leaving it watching jobs that nothing will take."""
    import asyncio

    from inference_service.registration.jobs import run_worker

    if not run_here:
        return await follow
    worker = asyncio.create_task(run_worker(settings, wait=False))
    following = asyncio.create_task(follow)
    await asyncio.wait({worker, following}, return_when=asyncio.FIRST_COMPLETED)
    if not following.done() and (error := worker.exception()) is not None:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        fail(f"the worker in this process stopped: {type(error).__name__}: {error}")
    result = await following
    await worker
    return result


@lora_app.command("register")
def register_cmd(
    source: str = typer.Argument(..., help="https download link, or a local .safetensors file."),
    name: str = typer.Option(..., "--name", help="Display name."),
    slug: str = typer.Option("", "--slug", help="URL-safe id (default: from the name)."),
    base_model: str = typer.Option(
        "",
        "--base-model",
        help="When the file does not say: a family in any spelling (SD 1.5, SDXL, Pony, Illustrious, ...).",
    ),
    trigger_word: list[str] = typer.Option([], "--trigger-word", help="Repeat for several."),
    license_: str = typer.Option("", "--license"),
    author: str = typer.Option("", "--author"),
    nsfw: bool = typer.Option(False, "--nsfw"),
    page_url: str = typer.Option("", "--page-url", help="The LoRA's human-facing page."),
    by: str = typer.Option("operator", "--by", help="Who registers it (audit log)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job until it ends."),
    run_here: bool = typer.Option(
        False, "--run-here", help="Run the job in this process (no worker needed)."
    ),
) -> None:
    """Register a LoRA: fetch, validate, generate its reference set and spec, embed, index."""
    job = _register(
        source, name, slug, base_model, trigger_word, license_, author, nsfw, page_url, by, wait, run_here
    )
    try:
        run(job)
    except KeyboardInterrupt:
        console.print("interrupted: a queued job stays queued and a worker registers it")
        raise typer.Exit(130) from None


async def _register_many(
    parsed: ParsedList, base_dir: Path, by: str, wait: bool, run_here: bool
) -> BulkSummary:
    import asyncio

    from findlora_client.bulk import ALREADY_QUEUED, ALREADY_REGISTERED, FAILED, REGISTERED, BulkSummary
    from inference_service.config import Settings
    from inference_service.registration.bulk import BulkRegistration, plan_entries

    settings = Settings()
    summary = BulkSummary.of(parsed)
    # Every local file is checked and staged before anything is queued.
    planned = await asyncio.to_thread(plan_entries, parsed.entries, base_dir, settings, by, summary)
    async with _registrations(settings) as registrations:
        if planned and not run_here:
            await _warn_without_workers(registrations, wait)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("queueing", total=len(parsed.entries) + len(parsed.bad))

            def show(done: int, running: int) -> None:
                description = (
                    f"{summary.count(REGISTERED)} registered · "
                    f"{summary.count(ALREADY_REGISTERED) + summary.count(ALREADY_QUEUED)} skipped · "
                    f"{summary.count(FAILED)} failed · {running} running"
                )
                progress.update(task, completed=done, description=description)

            bulk = BulkRegistration(registrations, summary, show)
            show(bulk.done(), 0)
            await bulk.queue(planned)
            if wait or run_here:
                await _beside_worker(bulk.follow(settings.watch_poll_seconds), settings, run_here)
    return summary


@lora_app.command("register-many")
def register_many_cmd(
    list_file: Path = typer.Argument(
        ...,
        help="A list of LoRAs: one link or .safetensors path per line (.txt), [[lora]] tables (.toml), "
        "or a model host's model-version metadata (.json). Relative paths are from the list's folder.",
    ),
    base_model: str = typer.Option(
        "", "--base-model", help="For entries that name none and whose file does not say (any spelling)."
    ),
    by: str = typer.Option("operator", "--by", help="Who registers them (audit log)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the jobs until they end."),
    run_here: bool = typer.Option(
        False, "--run-here", help="Run the jobs in this process (no worker needed)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary as JSON here."),
) -> None:
    """Register many LoRAs: entries already registered or queued are skipped, so a rerun resumes."""
    import json

    from findlora_client.bulk import default_base_model, parse_list

    if json_out is not None:
        check_writable(json_out, "--json")  # before the jobs run, not after
    try:
        text = list_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{list_file}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {list_file} as UTF-8 text: {exc}")
    parsed = parse_list(text, list_file.name)
    default_base_model(parsed, base_model)
    total = len(parsed.entries) + len(parsed.bad)
    if total == 0:
        fail(f"{list_file} lists no LoRAs (one link or path per line, [[lora]] tables, or model versions)")
    for warning in parsed.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    try:
        summary = run(_register_many(parsed, list_file.parent, by, wait, run_here))
    except KeyboardInterrupt:
        console.print(
            "interrupted: what was queued stays queued and the worker registers it; run the same "
            "command again to skip what is done and follow the rest"
        )
        raise typer.Exit(130) from None
    console.print(summary.headline(), markup=False)
    for line in summary.failure_lines():
        console.print(f"[red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
    if json_out is not None:
        json_out.write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    if summary.failed:
        raise typer.Exit(1)


def worker() -> None:
    """Registration worker: takes jobs from the queue (GPU recommended), resumes stalled ones."""
    from inference_service.config import Settings
    from inference_service.logs import configure_logging
    from inference_service.registration.jobs import run_worker

    configure_logging()
    run(run_worker(Settings()))


def register(app: typer.Typer) -> None:
    from findlora.commands.serve import serve_app

    app.add_typer(lora_app, name="lora")
    serve_app.command("worker")(worker)
