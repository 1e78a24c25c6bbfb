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
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    # Messages carry paths, names and server text: escaped, a '[' in them is never read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
    from findlora_client import ServiceCallError, ServiceUnreachable, TlsHandshakeFailed

    try:
        return asyncio.run(coro)
    except TlsHandshakeFailed as exc:  # the service is there: its message names the setting to fix
        fail(exc.message)
    except ServiceUnreachable as exc:
        fail(f"{exc.message}: {START_SERVICE}")
    except ServiceCallError as exc:
        fail(exc.message)
    except Exception as exc:
        if _is_conninfo_error(exc):
            fail(BAD_DATABASE_URL)
        for kind, prefix in _known_errors():
            if isinstance(exc, kind):
                fail(f"{prefix}{exc}")
        raise


BAD_DATABASE_URL = (
    "DATABASE_URL (or the file DATABASE_URL_FILE names) is not a valid PostgreSQL connection URL "
    "(postgresql://USER:PASSWORD@HOST:PORT/DBNAME, or key=value pairs); its value is not shown as it "
    "may hold a password"
)


def _is_conninfo_error(exc: BaseException) -> bool:
    """psycopg's parse error of a connection string: its text quotes the string, password included,
    so it is told by where it was raised and never printed."""
    try:
        import psycopg
    except ImportError:
        return False
    if not isinstance(exc, psycopg.ProgrammingError) or exc.sqlstate is not None:
        return False
    frame = exc.__traceback__
    while frame is not None:
        if Path(frame.tb_frame.f_code.co_filename).match("psycopg/conninfo.py"):
            return True
        frame = frame.tb_next
    return False


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


def check_writable(path: Path, option: str, *, create_parents: bool = False) -> None:
    """Fail before the work, not after it, when an output file cannot be written; with
    `create_parents`, for writers that create the missing directories above it."""
    if path.is_dir():
        fail(f"{option} {path} is a directory; give a file name")
    parent = path.parent
    if create_parents:
        _check_creatable(parent, f"{option} {path}")
    elif not parent.is_dir():
        fail(f"{option} {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        return  # created by the writer: _check_creatable checked its ancestor
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{option} {path}: not writable")


def check_json_out(path: Path | None) -> None:
    """A --json target written after long work (a benchmark, training), which creates its missing
    directories: checked before the work."""
    if path is not None:
        check_writable(path, "--json", create_parents=True)


def check_directory(path: Path, option: str) -> None:
    """Fail before the work when files cannot be written into `path` (created if missing)."""
    if path.exists() and not path.is_dir():
        fail(f"{option} {path} is a file; give a directory (it is created if missing)")
    _check_creatable(path, f"{option} {path}")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        fail(f"{option} {path}: not writable")


def _check_creatable(directory: Path, what: str) -> None:
    """`directory` exists, or its nearest existing ancestor is a directory this user may write to."""
    if directory.is_dir():
        return
    existing = directory.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"{what}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{what}: cannot create {directory}: {existing} is not writable")


def check_chart(path: Path, option: str) -> None:
    """A chart's file type is chosen by its suffix: refuse one matplotlib cannot write up front."""
    check_writable(path, option, create_parents=True)
    suffix = path.suffix.lower().lstrip(".")
    if not suffix:
        return  # matplotlib writes its default type (PNG)
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        fail(f"{option} needs matplotlib (install findlora[lab])")
    kinds = FigureCanvasBase.get_supported_filetypes()
    if suffix not in kinds:
        fail(f"{option} {path}: cannot write a .{suffix} chart; use one of .{', .'.join(sorted(kinds))}")
