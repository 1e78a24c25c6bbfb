"""Moderators: /lora hide|restore|takedown, /registerlora and /registerloras (an attached list)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot


async def setup(bot: FindLoraBot) -> None:
    from bot.discord.exts.moderation._cog import ModerationCog

    await bot.add_cog(ModerationCog(bot))
