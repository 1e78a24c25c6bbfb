"""The `findlora` command line. Each group lives in findlora/commands; imports stay lazy so that
client commands start fast and work with the bot-only install."""

from __future__ import annotations

import signal

import typer

from findlora.commands import auth, bench, catalog, db, demo, eval_cmd, lora, search, serve, status, train

app = typer.Typer(
    name="findlora",
    help="Find the LoRA that makes an image's style.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _quiet_logs() -> None:
    """Log lines go to stderr, warnings and worse, for every command (serve and worker raise
    the level again): stdout is for what a command prints, a JSON result included."""
    import logging

    from inference_service.logs import configure_logging

    configure_logging(json=False, level=logging.WARNING)


for module in (db, auth, catalog, search, status, serve, demo, eval_cmd, train, bench, lora):
    module.register(app)


def exit_on_termination() -> None:
    """SIGTERM and SIGHUP (`timeout`, a closed terminal, `docker stop`) killed the process without
    its exit hooks, so it never gave back its handle on the embedded database, whose server then
    outlived it. They now end it as an exit does (status 128 + the signal); a command that handles
    them itself (`serve inference` drains its RPCs) replaces this for its run."""

    def leave(number: int, _frame: object) -> None:
        raise SystemExit(128 + number)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, leave)


def main() -> None:
    """The entry point: a setting that does not parse (FINDLORA_GMI=maybe, in the environment
    or `.env`) is named in one line instead of a traceback from whichever command read it."""
    from pydantic import ValidationError
    from rich.markup import escape

    from findlora.console import err_console

    exit_on_termination()
    try:
        app()
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(error['loc'])}: {error['msg']}" for error in exc.errors())
        # escape: a message may quote what was typed, and a '[' in it is not markup
        err_console.print(f"invalid setting ({escape(problems)}); check the FINDLORA_* environment and .env")
        raise SystemExit(1) from None


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable behind a settings field (aliased fields already are one)."""
    if not loc:  # a check across several settings: its message names them
        return "settings"
    name = str(loc[0])
    return name if name.isupper() else f"FINDLORA_{name.upper()}"
