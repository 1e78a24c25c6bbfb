"""A long job's progress in Discord, past the 15 minutes an interaction's token lives.

A registration (a download, then diffusion) or a list of them can take longer than that. Edits of
the interaction's own reply then fail (HTTP 401, error 50027), and the moderator was left looking
at a stale "running · 40%" with no result. This surface edits the reply while the token is young,
then goes on in one message of its own: a direct message, or the channel (mentioning only them)
where their DMs are closed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import discord
import structlog

log = structlog.get_logger(__name__)
# Discord's interaction tokens last 15 minutes; a minute is kept back for a slow edit.
TOKEN_LIFETIME = timedelta(minutes=15)
SAFE_EDIT_AGE = TOKEN_LIFETIME - timedelta(minutes=1)
INVALID_WEBHOOK_TOKEN = 50027


class ProgressMessage:
    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction
        self.message: discord.Message | None = None  # once the token is too old to edit with
        self.prefix = ""  # the mention a channel message starts with

    def _token_fresh(self) -> bool:
        return discord.utils.utcnow() - self.interaction.created_at < SAFE_EDIT_AGE

    async def show(self, text: str) -> None:
        if self.message is None and self._token_fresh():
            try:
                await self.interaction.edit_original_response(content=text)
                return
            except discord.HTTPException as exc:
                if exc.status != 401 and exc.code != INVALID_WEBHOOK_TOKEN:
                    raise
        if self.message is not None:
            await self.message.edit(content=self.prefix + text)
            return
        self.message = await self._own_message(text)

    async def _own_message(self, text: str) -> discord.Message | None:
        user = self.interaction.user
        try:
            return await user.send(text)
        except discord.HTTPException:  # DMs closed: the channel, mentioning only them
            log.info("progress_dm_refused", user_id=user.id)
        channel = self.interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            return None
        self.prefix = f"{user.mention} "
        return await channel.send(self.prefix + text, allowed_mentions=discord.AllowedMentions(users=[user]))
