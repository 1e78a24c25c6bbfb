"""Moderators: /findlora-stats, retrieval quality as judged by users' votes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot


async def setup(bot: FindLoraBot) -> None:
    from bot.discord.exts.stats._cog import StatsCog

    await bot.add_cog(StatsCog(bot))
