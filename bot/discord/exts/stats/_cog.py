"""`/findlora-stats [since]` for moderators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.permissions import NOT_A_MODERATOR
from bot.core.replies import echo
from bot.core.stats import stats_table
from bot.discord._interactions import answer, reply, role_ids

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
                # `since` is free text (up to 6000 characters): said back short.
                await reply(interaction, f"`since` must be a date like 2026-11-01, not {echo(since)!r}.")
                return
        await interaction.response.defer(ephemeral=True, thinking=True)
        call = self.services.client.feedback_stats(start, timeout=self.services.settings.call_timeout_s)
        stats = await answer(interaction, call)
        if stats is not None:
            await interaction.followup.send(stats_table(stats), ephemeral=True)
