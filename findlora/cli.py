"""The `findlora` command line. Each group lives in findlora/commands; imports stay lazy so that
client commands start fast and work with the bot-only install."""

from __future__ import annotations

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
