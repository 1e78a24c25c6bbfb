"""Moderator commands. The bot checks the role; the service records who acted (audit_log)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.core.attachments import AttachmentRejected, download_text
from bot.core.bulk import register_list
from bot.core.jobs import Say, register_and_follow, split_trigger_words
from bot.core.permissions import NOT_A_MODERATOR
from bot.discord._interactions import (
    answer,
    attachment_info,
    base_model_choices,
    reply,
    role_ids,
    user_key,
)
from bot.discord._options import LoraRef, RequiredText, Text
from bot.discord._progress import ProgressMessage
from protos import findlora_pb2 as pb

if TYPE_CHECKING:
    from bot.discord.bot import FindLoraBot

log = structlog.get_logger(__name__)
_STATUS_WORDS = {
    pb.LORA_STATUS_HIDDEN: "hidden",
    pb.LORA_STATUS_ACTIVE: "restored",
    pb.LORA_STATUS_TAKEN_DOWN: "taken down",
}


class ModerationCog(commands.Cog, name="Moderation"):
    lora = app_commands.Group(name="lora", description="Moderators: change a LoRA's visibility.")

    def __init__(self, bot: FindLoraBot) -> None:
        self.bot = bot
        self.services = bot.services

    def is_moderator(self, interaction: discord.Interaction[Any]) -> bool:
        return self.services.moderators.allows(interaction.user.id, role_ids(interaction.user))

    async def _set_status(
        self, interaction: discord.Interaction[Any], lora: str, status: pb.LoraStatus, reason: str | None
    ) -> None:
        if not self.is_moderator(interaction):
            await reply(interaction, NOT_A_MODERATOR)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        moderator = user_key(interaction.user)
        timeout = self.services.settings.call_timeout_s
        call = self.services.client.set_lora_status(
            lora, status, moderator=moderator, reason=reason or "", timeout=timeout
        )
        result = await answer(interaction, call)
        if result is None:
            return
        log.info("lora_status_set", lora=result.slug, status=_STATUS_WORDS[status], by=moderator)
        await interaction.followup.send(f"`{result.slug}` is now {_STATUS_WORDS[status]}.", ephemeral=True)

    @lora.command(name="hide", description="Hide a LoRA from results (reversible).")
    @app_commands.describe(lora="Slug, link or id of the LoRA", reason="Why (kept in the audit log)")
    async def hide(
        self, interaction: discord.Interaction[Any], lora: LoraRef, reason: Text | None = None
    ) -> None:
        await self._set_status(interaction, lora, pb.LORA_STATUS_HIDDEN, reason)

    @lora.command(name="restore", description="Show a hidden LoRA in results again.")
    @app_commands.describe(lora="Slug, link or id of the LoRA", reason="Why (kept in the audit log)")
    async def restore(
        self, interaction: discord.Interaction[Any], lora: LoraRef, reason: Text | None = None
    ) -> None:
        await self._set_status(interaction, lora, pb.LORA_STATUS_ACTIVE, reason)

    @lora.command(name="takedown", description="Take a LoRA down for good.")
    @app_commands.describe(lora="Slug, link or id of the LoRA", reason="Why (kept in the audit log)")
    async def takedown(
        self, interaction: discord.Interaction[Any], lora: LoraRef, reason: Text | None = None
    ) -> None:
        await self._set_status(interaction, lora, pb.LORA_STATUS_TAKEN_DOWN, reason)

    @app_commands.command(name="registerlora", description="Moderators: add a LoRA to the catalog by link.")
    @app_commands.describe(
        url="https link to the .safetensors file",
        name="Display name",
        base_model="Base model, when the file does not say (SD 1.5, SDXL, Pony, Illustrious, ...)",
        trigger_words="Comma-separated trigger words",
    )
    @app_commands.autocomplete(base_model=base_model_choices)
    async def registerlora(
        self,
        interaction: discord.Interaction[Any],
        url: str,
        name: RequiredText,
        base_model: Text | None = None,
        trigger_words: str | None = None,
    ) -> None:
        if not self.is_moderator(interaction):
            await reply(interaction, NOT_A_MODERATOR)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        metadata = pb.LoraMetadata(
            name=name, base_model=base_model or "", trigger_words=split_trigger_words(trigger_words)
        )

        # Edits the reply while the interaction's token lives (15 min), then a message of its own.
        show = ProgressMessage(interaction).show

        async def progress(job_id: str) -> Say:
            return show

        await register_and_follow(self.services, user_key(interaction.user), url, metadata, show, progress)

    @app_commands.command(
        name="registerloras", description="Moderators: add many LoRAs from an attached list."
    )
    @app_commands.describe(
        file="A .txt (one https link per line), .toml ([[lora]] tables) or .json (model versions) list"
    )
    async def registerloras(self, interaction: discord.Interaction[Any], file: discord.Attachment) -> None:
        if not self.is_moderator(interaction):
            await reply(interaction, NOT_A_MODERATOR)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        show = ProgressMessage(interaction).show  # a list of registrations can outlast the token
        services = self.services
        try:
            text = await download_text(
                attachment_info(file), services.limits, services.http, services.download_headers
            )
        except AttachmentRejected as rejected:
            await show(rejected.message)
            return
        moderator = user_key(interaction.user)
        timeout = services.settings.call_timeout_s
        await register_list(services.client, moderator, text, file.filename, show, timeout=timeout)
