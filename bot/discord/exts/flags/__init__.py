"""Artists: /flaglookalike; moderators review the card in the review channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot


async def setup(bot: FindLoraBot) -> None:
    from bot.discord.exts.flags._cog import FlagsCog
    from bot.discord.exts.flags._components import ReviewButton

    bot.add_dynamic_items(ReviewButton)
    await bot.add_cog(FlagsCog(bot))
