"""Start the Discord bot process (`findlora serve discord`)."""

from __future__ import annotations

import httpx
import structlog

from bot.discord.bot import BotServices, FindLoraBot
from bot.discord.config import DiscordSettings
from findlora_client.credentials import connect

log = structlog.get_logger(__name__)


def create_bot(settings: DiscordSettings) -> FindLoraBot:
    client = connect(settings, settings.service, timeout=settings.call_timeout_s)
    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0), follow_redirects=False)
    return FindLoraBot(BotServices.create(settings, client, http))


async def run_bot(settings: DiscordSettings, token: str) -> None:
    bot = create_bot(settings)
    log.info("discord_bot_starting", service=settings.service, guilds=sorted(settings.guild_ids))
    async with bot:
        await bot.start(token)
