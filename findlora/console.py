"""Shared CLI plumbing: one console, and running async commands with user-facing errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def stage_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A `progress(stage, done, total)` callback drawing one transient rich bar per stage: what the
    benchmarks report their long steps through."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        yield progress


START_SERVICE = (
    "start it with `findlora serve inference` (or give --service / FINDLORA_SERVICE of a running one)"
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; known failures become one clear message, never a traceback."""
    from findlora_client import ServiceCallError, ServiceUnreachable

    try:
        return asyncio.run(coro)
    except ServiceUnreachable as exc:
        fail(f"{exc.message}: {START_SERVICE}")
    except ServiceCallError as exc:
        fail(exc.message)
    except Exception as exc:
        for kind, prefix in _known_errors():
            if isinstance(exc, kind):
                fail(f"{prefix}{exc}")
        raise


def _known_errors() -> list[tuple[type[BaseException], str]]:
    """Service-side errors, imported only if the service extra is installed."""
    known: list[tuple[type[BaseException], str]] = []
    try:
        import psycopg

        from db.embedded import DatabaseUnavailable
        from inference_service.catalog.format import CatalogError
        from inference_service.errors import ServiceError
        from inference_service.imaging import ImageRejected
        from inference_service.pseudonyms import FeedbackKeyError
    except ImportError:
        return known
    known += [
        (CatalogError, ""),
        (DatabaseUnavailable, ""),
        (ImageRejected, ""),
        (ServiceError, ""),
        (FeedbackKeyError, ""),
        (
            psycopg.OperationalError,
            "database unavailable (check DATABASE_URL, or unset it for the embedded one): ",
        ),
    ]
    return known


def check_writable(path: Path, option: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    if path.is_dir():
        fail(f"{option} {path} is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        fail(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{option} {path}: not writable")
