"""Start the Slack app (`findlora serve slack`): Socket Mode by default, the Events API over HTTP
when FINDLORA_SLACK_MODE=http."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import structlog
from aiohttp import web as aioweb
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.slack.app import create_app
from bot.slack.config import SlackSettings
from bot.slack.messages import web_client
from bot.slack.services import SlackServices
from findlora_client.credentials import connect

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SlackSecrets:
    bot_token: str = field(repr=False)
    app_token: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)

    @classmethod
    def read(cls, settings: SlackSettings) -> SlackSecrets:
        """Every secret the chosen mode needs; raises TokenMissing or OSError naming what is missing."""
        if settings.mode == "socket":
            return cls(settings.read_bot_token(), app_token=settings.read_app_token())
        return cls(settings.read_bot_token(), signing_secret=settings.read_signing_secret())


def create_services(settings: SlackSettings, bot_token: str) -> SlackServices:
    client = connect(settings, settings.service, timeout=settings.call_timeout_s)
    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0), follow_redirects=False)
    return SlackServices.create(settings, client, http, bot_token)


async def run_app(settings: SlackSettings, secrets: SlackSecrets) -> None:
    services = create_services(settings, secrets.bot_token)
    web = web_client(secrets.bot_token)
    log.info("slack_app_starting", mode=settings.mode, service=settings.service)
    try:
        if secrets.app_token is not None:
            app = create_app(services, web, signing_secret=None)
            handler = AsyncSocketModeHandler(app, secrets.app_token)
            await handler.start_async()  # type: ignore[no-untyped-call]
        else:
            app = create_app(services, web, signing_secret=secrets.signing_secret)
            runner = aioweb.AppRunner(app.web_app(path=settings.http_path))
            await runner.setup()
            try:
                await aioweb.TCPSite(runner, settings.http_host, settings.http_port).start()
                log.info("slack_http_listening", host=settings.http_host, port=settings.http_port)
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()
    finally:
        await services.close()
