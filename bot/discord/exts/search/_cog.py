"""The search feature's Discord surface: commands, context menu, reactions and components."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.core.attachments import AttachmentInfo, is_probably_image
from bot.core.paging import PageRef, parse_footer, parse_lora_id, parse_total
from bot.core.rendering import ResultsPage
from bot.core.replies import friendly_error
from bot.core.search_flow import SearchAsk, fetch_page, run_search
from bot.discord._interactions import (
    InteractionReplies,
    age_restricted,
    answer,
    attachment_info,
    base_model_choices,
    user_key,
)
from bot.discord._options import Text
from bot.discord.exts.search._components import SEARCH_COG
from bot.discord.exts.search._message import (
    NEXT,
    PAGE_REACTIONS,
    PREVIOUS,
    THUMBS_DOWN,
    THUMBS_UP,
    page_message,
)
from findlora_client import ServiceCallError

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot

log = structlog.get_logger(__name__)


class SearchInteractionReplies(InteractionReplies):
    """SearchReplies to the interaction that asked."""

    async def show(self, page: ResultsPage) -> None:
        send = (await page_message(page)).send_kwargs()
        self.thinking_in_public = False  # the page takes the "thinking…" message's place
        message = await self.interaction.followup.send(**send, ephemeral=self.private, wait=True)
        if not self.private:
            await _add_reactions(message)


class SearchCog(commands.Cog, name=SEARCH_COG):
    def __init__(self, bot: FindLoraBot) -> None:
        self.bot = bot
        self.services = bot.services
        self.context_menu = app_commands.ContextMenu(
            name="Find LoRA for this image", callback=self.find_for_message
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.context_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.context_menu.name, type=self.context_menu.type)

    # --- entry points ------------------------------------------------------------------------

    @app_commands.command(name="findlora", description="Find the LoRAs that make this image's style.")
    @app_commands.describe(
        image="The image whose style you want to find",
        top_k="How many results per page (1-10)",
        base_model="Only LoRAs that work on this base model (SD 1.5, SDXL, Pony, Illustrious, Flux.1 D, ...)",
        prompt="Use this prompt instead of the automatic pseudo-prompt",
        private="Answer only to you, so the image is not re-posted",
        image2="Another image in the same style (more images, steadier ranking)",
        image3="A third image in the same style",
        image4="A fourth image in the same style",
    )
    @app_commands.autocomplete(base_model=base_model_choices)
    async def findlora(
        self,
        interaction: discord.Interaction[Any],
        image: discord.Attachment,
        top_k: app_commands.Range[int, 1, 10] | None = None,
        base_model: Text | None = None,
        prompt: Text | None = None,
        private: bool = False,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
    ) -> None:
        images = [a for a in (image, image2, image3, image4) if a is not None]
        await self.run_search(
            interaction,
            [attachment_info(a) for a in images],
            top_k=top_k or self.services.settings.default_top_k,
            base_model=(base_model or "").strip(),
            prompt=prompt,
            private=private,
        )

    async def find_for_message(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        # A forwarded message carries its images in its snapshots, not its own attachments.
        attached = [*message.attachments, *(a for s in message.message_snapshots for a in s.attachments)]
        infos = [attachment_info(a) for a in attached]
        images = [info for info in infos if is_probably_image(info)]
        # Ephemeral: whoever asks about someone else's message gets the answer alone.
        await self.run_search(
            interaction,
            images,
            top_k=self.services.settings.default_top_k,
            base_model="",
            prompt=None,
            private=True,
        )

    # --- search ------------------------------------------------------------------------------

    async def run_search(
        self,
        interaction: discord.Interaction[Any],
        images: Sequence[AttachmentInfo],
        *,
        top_k: int,
        base_model: str,
        prompt: str | None,
        private: bool,
    ) -> None:
        ask = SearchAsk(
            user=user_key(interaction.user),
            images=images,
            top_k=top_k,
            allow_nsfw=self._allow_nsfw(interaction),
            base_model=base_model,
            prompt=prompt,
        )
        await run_search(ask, self.services, SearchInteractionReplies(interaction, private=private))

    # --- paging and feedback -----------------------------------------------------------------

    def _allow_nsfw(self, interaction: discord.Interaction[Any]) -> bool:
        return self.services.nsfw.allows(interaction.channel_id, age_restricted(interaction.channel))

    async def page_from_button(self, interaction: discord.Interaction[Any], target: PageRef) -> None:
        await interaction.response.defer()
        page = await answer(interaction, fetch_page(self.services, target, self._allow_nsfw(interaction)))
        if page is not None:
            await interaction.edit_original_response(**(await page_message(page)).edit_kwargs())

    async def vote_from_menu(
        self, interaction: discord.Interaction[Any], search_id: str, lora_id: int, up: bool
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = user_key(interaction.user)
        first = await answer(
            interaction, self.services.client.record_feedback(search_id, lora_id, up=up, user=user)
        )
        if first is not None:
            await interaction.followup.send(_vote_text(up, first), ephemeral=True)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        own = self.bot.user
        if emoji not in PAGE_REACTIONS or own is None or payload.user_id == own.id:
            return
        if payload.message_author_id not in (None, own.id):
            return  # 👍 on anyone else's message: no fetch, no request spent on Discord's limits
        reactor_user = payload.member or self.bot.get_user(payload.user_id)
        if reactor_user is not None and reactor_user.bot:
            return  # another bot's reaction is no one's vote, nor a page turn
        # A DM channel is not cached (no members intent, no DM history): a partial one fetches.
        channel = self.bot.get_channel(payload.channel_id) or self.bot.get_partial_messageable(
            payload.channel_id, guild_id=payload.guild_id
        )
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            message = await channel.fetch_message(payload.message_id)
        except discord.HTTPException:
            return
        if message.author.id != own.id or not message.embeds:
            return
        footer = message.embeds[0].footer.text
        current = parse_footer(footer)
        if current is None:
            return
        reactor = discord.Object(payload.user_id)
        paging = emoji in (NEXT, PREVIOUS)
        try:
            if paging:
                await self._page_by_reaction(message, channel, current, parse_total(footer), emoji == NEXT)
            elif (lora_id := parse_lora_id(footer)) is not None:
                await self.services.client.record_feedback(
                    current.search_id, lora_id, up=emoji == THUMBS_UP, user=user_key(reactor)
                )
        except ServiceCallError as error:
            await channel.send(
                f"<@{payload.user_id}> {friendly_error(error)}",
                delete_after=30,
                allowed_mentions=discord.AllowedMentions(users=[reactor]),
            )
        if paging:
            # Take the reaction back so the same arrow can be pressed again.
            with contextlib.suppress(discord.HTTPException):
                await message.remove_reaction(payload.emoji, reactor)

    async def _page_by_reaction(
        self,
        message: discord.Message,
        channel: discord.abc.Messageable,
        current: PageRef,
        total: int,
        forward: bool,
    ) -> None:
        target = current.next(total) if forward else current.previous()
        if target is not None:
            allow_nsfw = self.services.nsfw.allows(getattr(channel, "id", None), age_restricted(channel))
            page = await fetch_page(self.services, target, allow_nsfw)
            await message.edit(**(await page_message(page)).edit_kwargs())


def _vote_text(up: bool, first: bool) -> str:
    emoji = THUMBS_UP if up else THUMBS_DOWN
    return f"Thanks, your {emoji} is recorded." if first else f"Your vote is now {emoji}."


async def _add_reactions(message: discord.Message) -> None:
    try:
        for emoji in PAGE_REACTIONS:
            await message.add_reaction(emoji)
    except discord.HTTPException:
        log.info("reactions_not_added", message_id=message.id)  # missing Add Reactions permission
