"""`findlora serve inference|discord|slack` (the worker arrives with its issue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from findlora.console import fail, run
from findlora.metrics_http import start_metrics_server
from findlora_client import DEFAULT_ADDRESS, TokenMissing

if TYPE_CHECKING:
    from bot.core.settings import ChatBotSettings

serve_app = typer.Typer(help="Run a findlora process.", no_args_is_help=True)
Secrets = TypeVar("Secrets")


def _start_chat_bot(settings: ChatBotSettings, read_secrets: Callable[[], Secrets]) -> Secrets:
    """The bot's secrets, checked with the service token and TLS files before anything starts."""
    try:
        secrets = read_secrets()
        settings.require_service_token()
        settings.client_tls()
    except (TokenMissing, OSError) as exc:
        fail(str(exc))
    prefix = str(settings.model_config.get("env_prefix", ""))  # FINDLORA_DISCORD_, FINDLORA_SLACK_
    _start_metrics(settings.metrics_listen, f"{prefix}METRICS_LISTEN")
    return secrets


def _start_metrics(listen: str, variable: str) -> None:
    """The /metrics endpoint, if configured; a bad address or a taken port is one line, not a traceback."""
    if not listen:
        return
    try:
        start_metrics_server(listen)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"{variable}={listen}: cannot serve /metrics there: {reason}")


@serve_app.command("inference")
def inference(
    listen: str = typer.Option("", help=f"host:port (default FINDLORA_LISTEN or {DEFAULT_ADDRESS})."),
) -> None:
    """The gRPC inference service: search, paging, health, reflection."""
    from inference_service.config import Settings
    from inference_service.logs import configure_logging
    from inference_service.server import serve

    configure_logging()
    settings = Settings()
    _start_metrics(settings.metrics_listen, "FINDLORA_METRICS_LISTEN")
    run(serve(settings, listen or None))


@serve_app.command("discord")
def discord_bot() -> None:
    """The Discord bot. Token from DISCORD_TOKEN or DISCORD_TOKEN_FILE, findlora client token from
    FINDLORA_TOKEN or FINDLORA_TOKEN_FILE; settings FINDLORA_DISCORD_*."""
    from bot.discord.config import DiscordSettings
    from bot.discord.run import run_bot
    from inference_service.logs import configure_logging

    configure_logging()
    settings = DiscordSettings()
    run(run_bot(settings, _start_chat_bot(settings, settings.read_token)))


@serve_app.command("slack")
def slack_app() -> None:
    """The Slack app: Socket Mode (SLACK_BOT_TOKEN, SLACK_APP_TOKEN) by default, HTTP with
    FINDLORA_SLACK_MODE=http (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET); each also as *_FILE. The
    findlora client token from FINDLORA_TOKEN or FINDLORA_TOKEN_FILE."""
    from bot.slack.config import SlackSettings
    from bot.slack.run import SlackSecrets, run_app
    from inference_service.logs import configure_logging

    configure_logging()
    settings = SlackSettings()
    run(run_app(settings, _start_chat_bot(settings, lambda: SlackSecrets.read(settings))))


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")
