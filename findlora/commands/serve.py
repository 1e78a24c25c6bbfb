"""`findlora serve inference` (bots and worker arrive with their issues)."""

from __future__ import annotations

import typer

from findlora.console import run

serve_app = typer.Typer(help="Run a findlora process.", no_args_is_help=True)


@serve_app.command("inference")
def inference(
    listen: str = typer.Option("", help="host:port (default FINDLORA_LISTEN or 127.0.0.1:50051)."),
) -> None:
    """The gRPC inference service: search, paging, health, reflection."""
    from inference_service.config import Settings
    from inference_service.logs import configure_logging
    from inference_service.server import serve

    configure_logging()
    run(serve(Settings(), listen or None))


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")
