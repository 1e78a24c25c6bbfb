"""The Discord bot: a commands.Bot holding the shared services the extensions use."""

from __future__ import annotations

import contextlib
import pkgutil
from typing import Any

import discord
import httpx
import structlog
from discord import app_commands
from discord.ext import commands

from bot.core.attachments import ImageLimits
from bot.core.metrics import BOT_COMMANDS, BOT_ERRORS
from bot.core.nsfw import NsfwPolicy
from bot.core.permissions import ModeratorPolicy
from bot.core.ratelimit import RateLimiter
from bot.core.replies import INTERNAL
from bot.core.services import ChatServices
from bot.discord import exts
from bot.discord._interactions import reply
from bot.discord.config import DiscordSettings
from findlora_client import FindLoraClient

log = structlog.get_logger(__name__)


def walk_extensions() -> list[str]:
    """Every extension package under bot.discord.exts (a feature is a folder)."""
    return sorted(module.name for module in pkgutil.iter_modules(exts.__path__, f"{exts.__name__}."))


class BotServices(ChatServices[DiscordSettings]):
    @classmethod
    def create(
        cls, settings: DiscordSettings, client: FindLoraClient, http: httpx.AsyncClient
    ) -> BotServices:
        return cls(
            settings=settings,
            client=client,
            http=http,
            moderators=ModeratorPolicy.of(settings.moderator_role_ids, settings.moderator_user_ids),
            nsfw=NsfwPolicy(),
            limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
            search_limiter=RateLimiter(settings.searches_per_minute, 60),
            flag_limiter=RateLimiter(settings.flags_per_hour, 3600),
        )


class FindLoraBot(commands.Bot):
    def __init__(self, services: BotServices) -> None:
        # Default intents suffice: slash commands, components and reactions; no privileged intents
        # (context-menu interactions carry the message's attachments themselves).
        # No message of the bot pings anyone unless it says so: a prompt or a LoRA name can hold
        # "@everyone" or a role mention, and the bot's own permissions would make it ring.
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.services = services
        self.tree.error(self.on_app_command_error)

    async def load_extensions(self) -> None:
        for name in walk_extensions():
            await self.load_extension(name)

    async def setup_hook(self) -> None:
        await self.load_extensions()
        guilds = self.services.settings.guild_ids
        for guild_id in guilds:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if not guilds:
            await self.tree.sync()
        log.info("discord_commands_synced", guilds=sorted(guilds))

    async def on_app_command_completion(
        self, interaction: discord.Interaction[Any], command: app_commands.Command[Any, ..., Any] | Any
    ) -> None:
        BOT_COMMANDS.labels(command.qualified_name).inc()

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """Last resort: log with the trace, tell the user one calm line."""
        command = interaction.command.qualified_name if interaction.command else "?"
        log.error("discord_command_failed", command=command, error=type(error).__name__, exc_info=error)
        BOT_ERRORS.labels("internal").inc()
        with contextlib.suppress(discord.HTTPException):
            await reply(interaction, INTERNAL)

    async def close(self) -> None:
        await super().close()
        await self.services.close()
