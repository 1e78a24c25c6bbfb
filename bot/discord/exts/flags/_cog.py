"""Lookalike flags: the artist reports, moderators decide in the review channel, the artist hears back."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING, Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.core import flags
from bot.core.permissions import NOT_A_MODERATOR
from bot.core.rendering import contact_sheet
from bot.discord._interactions import (
    InteractionReplies,
    age_restricted,
    answer,
    attachment_info,
    reply,
    role_ids,
    user_id_of,
    user_key,
)
from bot.discord._options import LoraRef
from bot.discord.exts.flags._components import FLAGS_COG, review_view
from findlora_client import QueryImage
from findlora_client.protocol import MAX_NOTE_CHARS
from protos import findlora_pb2 as pb

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot

log = structlog.get_logger(__name__)
SHEET_NAME = "nearest-transfers.webp"


def review_embed(flag: pb.Flag, *, with_sheet: bool, allow_nsfw: bool) -> discord.Embed:
    colour = {
        pb.FLAG_STATUS_OPEN: discord.Colour.orange(),
        pb.FLAG_STATUS_APPROVED: discord.Colour.red(),
        pb.FLAG_STATUS_DISMISSED: discord.Colour.light_grey(),
    }.get(flag.status, discord.Colour.orange())
    embed = discord.Embed(title=f"Lookalike report: {flag.lora_name} ({flag.slug})"[:256], colour=colour)
    reporter_id = user_id_of(flag.reporter)
    embed.add_field(name="Reporter", value=f"<@{reporter_id}>" if reporter_id else flag.reporter)
    embed.add_field(name="Status", value=flags.status_label(flag))
    if flag.reviewer:
        reviewer_id = user_id_of(flag.reviewer)
        embed.add_field(name="Reviewer", value=f"<@{reviewer_id}>" if reviewer_id else flag.reviewer)
    embed.add_field(name="Evidence", value=flags.evidence_text(flag, allow_nsfw=allow_nsfw), inline=False)
    if flag.note:
        embed.add_field(name="Note", value=flag.note[:1024], inline=False)
    if with_sheet:
        embed.set_image(url=f"attachment://{SHEET_NAME}")
    embed.set_footer(text=f"flag {flag.flag_id}")
    return embed


REQUEST_TOO_LARGE = 40005  # Discord's code for uploads over the server's limit


async def _files(
    flag: pb.Flag, artworks: list[QueryImage], allow_nsfw: bool
) -> tuple[list[discord.File], bool]:
    # Decoding and resizing the thumbnails takes a while: off the event loop (see search/_message).
    sheet = await asyncio.to_thread(contact_sheet, flags.evidence_transfers(flag, allow_nsfw=allow_nsfw))
    files = [discord.File(io.BytesIO(sheet), filename=SHEET_NAME)] if sheet else []
    files += [
        discord.File(io.BytesIO(art.data), filename=flags.artwork_filename(i, art.content_type))
        for i, art in enumerate(artworks, start=1)
    ]
    return files, sheet is not None


class FlagInteractionReplies(InteractionReplies):
    """FlagReplies to the artist's interaction, always private."""

    def __init__(self, cog: FlagsCog, interaction: discord.Interaction[Any]) -> None:
        super().__init__(interaction, private=True)
        self.cog = cog

    async def filed(self, flag: pb.Flag, artworks: list[QueryImage]) -> None:
        posted = await self.cog.post_review_card(flag, artworks)
        channel = self.interaction.channel
        allow_nsfw = self.cog.services.nsfw.allows(self.interaction.channel_id, age_restricted(channel))
        files, with_sheet = await _files(flag, [], allow_nsfw)
        evidence = flags.evidence_text(flag, allow_nsfw=allow_nsfw)
        embed = discord.Embed(title=f"Report received: {flag.slug}", description=evidence)
        if with_sheet:
            embed.set_image(url=f"attachment://{SHEET_NAME}")
            embed.set_footer(text="Above: the LoRA's sample transfers nearest your artwork")
        await self.interaction.followup.send(
            flags.follow_up_text(posted), embed=embed, files=files, ephemeral=True
        )


class FlagsCog(commands.Cog, name=FLAGS_COG):
    def __init__(self, bot: FindLoraBot) -> None:
        self.bot = bot
        self.services = bot.services

    @app_commands.command(name="flaglookalike", description="Report a LoRA that imitates your artwork.")
    @app_commands.describe(
        lora="Slug or link of the LoRA",
        artwork="An image of your own artwork",
        artwork2="Another image of your artwork (optional)",
        artwork3="Another image of your artwork (optional)",
        note="Anything the moderators should know",
    )
    async def flaglookalike(
        self,
        interaction: discord.Interaction[Any],
        lora: LoraRef,
        artwork: discord.Attachment,
        artwork2: discord.Attachment | None = None,
        artwork3: discord.Attachment | None = None,
        note: app_commands.Range[str, 0, MAX_NOTE_CHARS] | None = None,
    ) -> None:
        attachments = [attachment_info(a) for a in (artwork, artwork2, artwork3) if a is not None]
        ask = flags.FlagAsk(user_key(interaction.user), lora, attachments, note or "")
        await flags.run_flag(ask, self.services, FlagInteractionReplies(self, interaction))

    async def post_review_card(self, flag: pb.Flag, artworks: list[QueryImage]) -> bool:
        channel_id = self.services.settings.review_channel_id
        channel = self.bot.get_channel(channel_id) if channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("review_channel_missing", channel_id=channel_id, flag_id=flag.flag_id)
            return False
        allow_nsfw = self.services.nsfw.allows(channel_id, age_restricted(channel))
        for attached in (artworks, []):  # the artworks may be over the upload limit together
            files, with_sheet = await _files(flag, attached, allow_nsfw)
            try:
                await channel.send(
                    embed=review_embed(flag, with_sheet=with_sheet, allow_nsfw=allow_nsfw),
                    files=files,
                    view=review_view(flag.flag_id),
                )
                return True
            except discord.HTTPException as error:
                too_large = error.status == 413 or error.code == REQUEST_TOO_LARGE
                log.warning(
                    "review_card_failed", flag_id=flag.flag_id, status=error.status, too_large=too_large
                )
                if not (too_large and attached):
                    return False
        return False

    async def review(self, interaction: discord.Interaction[Any], flag_id: str, *, approve: bool) -> None:
        review_channel = self.services.settings.review_channel_id
        allowed = self.services.moderators.allows(interaction.user.id, role_ids(interaction.user))
        if not allowed or interaction.channel_id != review_channel:
            await reply(interaction, NOT_A_MODERATOR)
            return
        await interaction.response.defer()
        moderator = user_key(interaction.user)
        settings = self.services.settings
        call = self.services.client.review_flag(
            flag_id, approve=approve, moderator=moderator, timeout=settings.call_timeout_s
        )
        flag = await answer(interaction, call)
        if flag is None:
            return
        log.info("flag_reviewed", flag_id=flag_id, decision=flags.status_label(flag), by=moderator)
        allow_nsfw = self.services.nsfw.allows(interaction.channel_id, age_restricted(interaction.channel))
        has_sheet = bool(flags.evidence_transfers(flag, allow_nsfw=allow_nsfw))
        embed = review_embed(flag, with_sheet=has_sheet, allow_nsfw=allow_nsfw)
        await interaction.edit_original_response(embed=embed, view=None)
        await self._tell_artist(flag)

    async def _tell_artist(self, flag: pb.Flag) -> None:
        artist_id = user_id_of(flag.reporter)
        if artist_id is None:
            return
        try:
            artist = await self.bot.fetch_user(artist_id)
            await artist.send(flags.outcome_text(flag))
        except discord.HTTPException as error:
            # Closed DMs: the decision stands and is audited; the artist can ask a moderator.
            log.info("artist_not_told", flag_id=flag.flag_id, status=error.status)
