"""`/findlora-stats [since]` for moderators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.permissions import NOT_A_MODERATOR
from bot.core.replies import friendly_error
from bot.core.stats import stats_table
from bot.discord._interactions import reply, role_ids
from findlora_client import ServiceCallError

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot


class StatsCog(commands.Cog, name="Stats"):
    def __init__(self, bot: FindLoraBot) -> None:
        self.services = bot.services

    @app_commands.command(
        name="findlora-stats", description="Moderators: precision@k as judged by users' votes."
    )
    @app_commands.describe(since="Only votes from this date on, e.g. 2026-11-01")
    async def findlora_stats(self, interaction: discord.Interaction[Any], since: str | None = None) -> None:
        if not self.services.moderators.allows(interaction.user.id, role_ids(interaction.user)):
            await reply(interaction, NOT_A_MODERATOR)
            return
        start = None
        if since:
            try:
                start = datetime.fromisoformat(since).replace(tzinfo=UTC)
            except ValueError:
                await reply(interaction, f"`since` must be a date like 2026-11-01, not {since!r}.")
                return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            stats = await self.services.client.feedback_stats(
                start, timeout=self.services.settings.call_timeout_s
            )
        except ServiceCallError as error:
            await interaction.followup.send(friendly_error(error), ephemeral=True)
            return
        await interaction.followup.send(stats_table(stats), ephemeral=True)
