"""`findlora search IMAGE...`: ask the running inference service over gRPC (no torch here)."""

from __future__ import annotations

import json
import math
import mimetypes
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.style import Style
from rich.table import Table
from rich.text import Text

from findlora.console import check_directory, check_writable, console, err_console, fail, run


def style_distance(match: Any) -> float | None:
    """d_avg, or None for a LoRA without kept references (NaN on the wire, which is not JSON)."""
    return None if math.isnan(match.style_distance) else float(match.style_distance)


def response_json(response: Any, transfer_paths: dict[tuple[str, str], Path] | None = None) -> dict[str, Any]:
    """The JSON of docs/design.md 7."""
    paths = transfer_paths or {}
    return {
        "search_id": response.search_id,
        "pseudo_prompt": response.pseudo_prompt,
        "results": [
            {
                "rank": m.rank,
                "slug": m.slug,
                "name": m.name,
                "url": m.url,
                "score": m.score,
                "style_distance": style_distance(m),
                "rkme_score": m.rkme_score if m.HasField("rkme_score") else None,
                "suggested_prompt": m.suggested_prompt,
                "transfers": [
                    {"sample_id": t.sample_id, "path_or_key": str(paths.get((m.slug, t.sample_id), t.key))}
                    for t in m.transfers
                ],
            }
            for m in response.matches
        ],
    }


def results_table(response: Any, title: str = "") -> Table:
    # Cells and title are Text, not markup: catalog names, slugs and URLs may hold '[' and ']'.
    table = Table(title=Text(title or f"search {response.search_id}"))
    table.add_column("rank", justify="right")
    table.add_column("LoRA", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("d_avg", justify="right")
    table.add_column("nearest transfers", overflow="fold")
    for m in response.matches:
        lora = Text(m.name)
        lora.append(f" {m.slug} · {m.base_model}", style="dim")
        link = Style(link=m.url) if m.url.startswith(("https://", "http://")) else None
        lora.append("\n").append(m.url, style=link)
        transfers = Text(" ".join(t.sample_id for t in m.transfers))
        d_avg = style_distance(m)
        shown = "—" if d_avg is None else f"{d_avg:.4f}"
        table.add_row(str(m.rank), lora, f"{m.score:.4f}", shown, transfers)
    return table


def write_output(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        fail(f"{option} {path}: cannot write: {exc.strerror or exc}")


def write_visuals(
    response: Any, queries: list[tuple[str, bytes]], sheet: Path | None, html: Path | None, title: str = ""
) -> None:
    """The --sheet PNG and the --html page of one search (findlora.render)."""
    from findlora.render import render_html, render_sheet, results_view

    view = results_view(response, queries, title)
    if sheet is not None:
        write_output(sheet, render_sheet(view), "--sheet")
    if html is not None:
        write_output(html, render_html(view).encode("utf-8"), "--html")


def save_transfers(response: Any, directory: Path) -> dict[tuple[str, str], Path]:
    saved = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for m in response.matches:
            for t in m.transfers:
                extension = mimetypes.guess_extension(t.mime_type) or ".img"
                path = directory / f"{m.rank:02d}-{m.slug}-{t.sample_id}{extension}"
                path.write_bytes(t.thumbnail)
                saved[(m.slug, t.sample_id)] = path
    except OSError as exc:  # checked before the search; this is the disk filling up or a race
        fail(f"--transfers-dir {directory}: cannot save the thumbnails: {exc.strerror or exc}")
    return saved


async def _search(
    images: list[Path],
    top_k: int,
    base_model: str,
    prompt: str | None,
    as_json: bool,
    address: str,
    transfers_dir: Path | None,
    nsfw: bool,
    exact: bool = False,
    sheet: Path | None = None,
    html: Path | None = None,
) -> None:
    from findlora.access import service_client
    from findlora_client import QueryImage
    from findlora_client.base_models import resolve

    if warning := resolve(base_model).warning:  # a typo would filter to a family of its own
        err_console.print(
            f"[yellow]warning:[/] {escape(warning)}; only LoRAs registered under that name match",
            highlight=False,
            soft_wrap=True,
        )
    queries = []
    for path in images:
        try:
            queries.append(QueryImage(path.read_bytes(), path.name, mimetypes.guess_type(path.name)[0] or ""))
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}")
    async with service_client(address) as client:
        response = await client.search(
            queries, top_k=top_k, base_model=base_model, prompt=prompt, allow_nsfw=nsfw, exact=exact
        )
    paths = save_transfers(response, transfers_dir) if transfers_dir else None
    write_visuals(response, [(q.filename, q.data) for q in queries], sheet, html)
    if as_json:
        print(json.dumps(response_json(response, paths), indent=2))
        return
    console.print(results_table(response))
    if response.pseudo_prompt:
        console.print(f"pseudo-prompt: {response.pseudo_prompt}", markup=False)
    for label, written in (("sheet", sheet), ("page", html)):
        if written is not None:
            console.print(f"{label}: {written}", highlight=False, markup=False)


def search(
    images: list[Path] = typer.Argument(..., help="1-4 images that share one style."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, max=50),
    base_model: str = typer.Option(
        "",
        "--base-model",
        help="Only LoRAs for this base model family: any common spelling (SD 1.5, SDXL, Pony, "
        "Illustrious, Flux.1 D, ...); see docs/design.md 6.1 for what each family includes.",
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Use this prompt instead of the pseudo-prompt."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    service: str = typer.Option("", "--service", help="Service address (default FINDLORA_SERVICE or local)."),
    transfers_dir: Path | None = typer.Option(
        None, "--transfers-dir", help="Save sample-transfer thumbnails."
    ),
    nsfw: bool = typer.Option(False, "--nsfw", help="Include NSFW LoRAs."),
    exact: bool = typer.Option(
        False,
        "--exact",
        help="Exhaustive reference ranking: d_avg over every reference (and, with GMI, RKME over "
        "every spec) instead of the candidate search; slow; needs a client with the moderate role.",
    ),
    sheet: Path | None = typer.Option(
        None, "--sheet", help="Write a PNG sheet: the query beside each LoRA's name, scores and transfers."
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Write the same as one self-contained HTML page (images inlined)."
    ),
) -> None:
    """Rank LoRAs by how well they reproduce the style of the image(s)."""
    if not 1 <= len(images) <= 4:
        fail("give 1 to 4 images")
    for option, path in (("--sheet", sheet), ("--html", html)):
        if path is not None:
            check_writable(path, option)
    if transfers_dir is not None:
        check_directory(transfers_dir, "--transfers-dir")  # before the search, not after it
    run(
        _search(
            images,
            top_k,
            base_model,
            prompt,
            as_json,
            service or default_service_address(),
            transfers_dir,
            nsfw,
            exact,
            sheet,
            html,
        )
    )


async def _health(address: str) -> str:
    from findlora.access import service_client

    async with service_client(address) as client:
        return await client.health()


def health(service: str = typer.Option("", "--service", help="Service address.")) -> None:
    """Exit 0 when the service reports SERVING (container healthchecks use this)."""
    address = service or default_service_address()
    status = run(_health(address))
    console.print(f"{address}: {status}", markup=False)
    if status != "SERVING":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("health")(health)


def default_service_address() -> str:
    """FINDLORA_SERVICE (environment or .env), else the local default; `status` uses it too."""
    from findlora.access import service_address  # lazily: the CLI starts without the settings stack

    return service_address()
