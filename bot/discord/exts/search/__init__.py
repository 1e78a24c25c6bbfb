"""/findlora, the "Find LoRA for this image" menu, paging and feedback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot


async def setup(bot: FindLoraBot) -> None:
    from bot.discord.exts.search._cog import SearchCog
    from bot.discord.exts.search._components import PageButton, RateSelect

    bot.add_dynamic_items(PageButton, RateSelect)
    await bot.add_cog(SearchCog(bot))
