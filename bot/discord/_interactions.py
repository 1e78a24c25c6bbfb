"""Small helpers at the Discord edge: answering an interaction whether or not it was deferred,
and turning Discord objects into the core's neutral values."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.core.attachments import AttachmentInfo
from bot.core.replies import friendly_error
from findlora_client import ServiceCallError
from findlora_client.base_models import suggestions

T = TypeVar("T")


class InteractionReplies:
    """Answers to the interaction that asked (the core flows' replies); `private` ones only to its user."""

    def __init__(self, interaction: discord.Interaction[Any], *, private: bool) -> None:
        self.interaction, self.private = interaction, private
        self.thinking_in_public = False

    async def started(self) -> None:
        # Downloading and the service's work take longer than Discord's 3-second answer window.
        await self.interaction.response.defer(thinking=True, ephemeral=self.private)
        self.thinking_in_public = not self.private

    async def say(self, text: str) -> None:
        if self.thinking_in_public:
            # The first follow-up of a public defer replaces its "thinking…" message and is public
            # whatever its ephemeral flag: remove that message, so the line is the user's alone.
            self.thinking_in_public = False
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.delete_original_response()
        await reply(self.interaction, text)


async def reply(interaction: discord.Interaction[Any], content: str, *, ephemeral: bool = True) -> None:
    """Answer with text: the first response, or a follow-up once the interaction is deferred."""
    if interaction.response.is_done():
        await interaction.followup.send(content, ephemeral=ephemeral)
    else:
        await interaction.response.send_message(content, ephemeral=ephemeral)


async def answer(interaction: discord.Interaction[Any], call: Awaitable[T]) -> T | None:
    """The service's reply, or None once the user has been told (privately) why there is none."""
    try:
        return await call
    except ServiceCallError as error:
        await reply(interaction, friendly_error(error))
        return None


def user_key(user: discord.abc.User | discord.Object) -> str:
    """The opaque id the service stores for a person (rate limits, feedback, flags, audit)."""
    return f"discord:{user.id}"


def user_id_of(key: str) -> int | None:
    prefix, _, rest = key.partition(":")
    return int(rest) if prefix == "discord" and rest.isdigit() else None


def role_ids(user: discord.abc.User) -> list[int]:
    """Role ids of a guild member; a user outside a guild (DMs) has none."""
    return [role.id for role in getattr(user, "roles", [])]


def attachment_info(attachment: discord.Attachment) -> AttachmentInfo:
    return AttachmentInfo(
        url=attachment.url,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
    )


def age_restricted(channel: object) -> bool:
    """Discord's NSFW (age-restricted) flag of a channel; threads follow their parent; DMs are not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def base_model_choices(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    """Autocomplete of a base-model option: the canonical families matching what was typed (any
    spelling: "sd 1.5", "pony", "flux.1 d"); a name typed past them is still accepted."""
    return [app_commands.Choice(name=f"{m.name} ({m.id})"[:100], value=m.id) for m in suggestions(current)]
