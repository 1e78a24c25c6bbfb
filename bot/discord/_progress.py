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

from bot.core.rendering import clip

log = structlog.get_logger(__name__)
# Discord's interaction tokens last 15 minutes; a minute is kept back for a slow edit.
TOKEN_LIFETIME = timedelta(minutes=15)
SAFE_EDIT_AGE = TOKEN_LIFETIME - timedelta(minutes=1)
INVALID_WEBHOOK_TOKEN = 50027
MESSAGE_MAX_CHARS = 2000


class ProgressMessage:
    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction
        self.message: discord.Message | None = None  # once the token is too old to edit with
        self.prefix = ""  # the mention a channel message starts with
        self.unreachable = False  # neither a DM nor the channel would take a message

    def _token_fresh(self) -> bool:
        return discord.utils.utcnow() - self.interaction.created_at < SAFE_EDIT_AGE

    async def show(self, text: str) -> None:
        # Discord refuses a message over 2000 characters (HTTP 400): the result would be lost.
        text = clip(text, MESSAGE_MAX_CHARS - len(f"{self.interaction.user.mention} "))
        if self.message is None and self._token_fresh():
            try:
                await self.interaction.edit_original_response(content=text)
                return
            except discord.HTTPException as exc:
                # The token ran out early, or the reply is gone (an ephemeral one dismissed): a
                # message of its own, rather than the job's news ending here unseen.
                if exc.status != 401 and exc.code != INVALID_WEBHOOK_TOKEN:
                    log.info("progress_reply_refused", status=exc.status, code=exc.code)
        if self.message is not None:
            try:
                await self.message.edit(content=self.prefix + text)
                return
            except discord.HTTPException:  # deleted meanwhile: post the news anew
                log.info("progress_message_lost", message_id=self.message.id)
                self.message = None
        if self.unreachable:
            return
        self.message = await self._own_message(text)

    async def _own_message(self, text: str) -> discord.Message | None:
        user = self.interaction.user
        try:
            return await user.send(text)
        except discord.HTTPException:  # DMs closed: the channel, mentioning only them
            log.info("progress_dm_refused", user_id=user.id)
        channel = self.interaction.channel
        if isinstance(channel, discord.abc.Messageable):
            self.prefix = f"{user.mention} "
            mention_only = discord.AllowedMentions(users=[user])
            try:
                return await channel.send(self.prefix + text, allowed_mentions=mention_only)
            except discord.HTTPException:  # no Send Messages there either: the job goes on unseen
                log.warning("progress_undeliverable", user_id=user.id, channel_id=channel.id)
        # Nowhere left to say it: later updates are dropped, not retried against the same refusals.
        self.unreachable = True
        return None
