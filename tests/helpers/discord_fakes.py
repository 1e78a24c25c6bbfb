"""Fakes of Discord objects at the API edge: spec_set mocks, so a typo or an attribute discord.py
does not have fails the test. Network-facing methods are AsyncMocks that record what was sent;
messages remember their embeds so a later reaction can read them back, as Discord would."""

from __future__ import annotations

import itertools
import re
from typing import Any
from unittest import mock

import discord

from bot.discord.exts.flags._components import REVIEW_TEMPLATE, ReviewButton
from bot.discord.exts.search._components import PAGE_TEMPLATE, RATE_TEMPLATE, PageButton, RateSelect

_ids = itertools.count(10_000)
# What each fake channel has received, oldest first (spec_set mocks cannot carry extra attributes).
_posted: dict[mock.MagicMock, dict[int, mock.MagicMock]] = {}


def messages_in(channel: mock.MagicMock) -> list[mock.MagicMock]:
    return list(_posted.get(channel, {}).values())


def make_role(role_id: int) -> mock.MagicMock:
    role = mock.MagicMock(spec_set=discord.Role)
    role.id = role_id
    return role


def make_member(user_id: int, role_ids: tuple[int, ...] = ()) -> mock.MagicMock:
    member = mock.MagicMock(spec_set=discord.Member)
    member.id = user_id
    member.roles = [make_role(r) for r in role_ids]
    member.mention = f"<@{user_id}>"
    member.send = mock.AsyncMock()
    return member


def make_message(author_id: int, **sent: Any) -> mock.MagicMock:
    """A message as Discord returns it after a send: with the embeds and view it was sent with."""
    message = mock.MagicMock(spec_set=discord.Message)
    message.id = next(_ids)
    message.author = make_member(author_id)
    message.content = sent.get("content")
    message.embeds = list(sent.get("embeds") or ([sent["embed"]] if sent.get("embed") else []))
    message.attachments = list(sent.get("attachments_in", []))
    message.add_reaction = mock.AsyncMock()
    message.remove_reaction = mock.AsyncMock()

    async def edit(**changes: Any) -> mock.MagicMock:
        if "embeds" in changes:
            message.embeds = list(changes["embeds"])
        return message

    message.edit = mock.AsyncMock(side_effect=edit)
    return message


def make_channel(channel_id: int, *, bot_id: int, nsfw: bool = False) -> mock.MagicMock:
    channel = mock.MagicMock(spec_set=discord.TextChannel)
    channel.id = channel_id
    channel.is_nsfw.return_value = nsfw
    posted = _posted.setdefault(channel, {})

    async def send(content: str | None = None, **kwargs: Any) -> mock.MagicMock:
        message = make_message(bot_id, content=content, **kwargs)
        posted[message.id] = message
        return message

    async def fetch_message(message_id: int) -> mock.MagicMock:
        return posted[message_id]

    channel.send = mock.AsyncMock(side_effect=send)
    channel.fetch_message = mock.AsyncMock(side_effect=fetch_message)
    return channel


def make_attachment(
    url: str, filename: str, content_type: str | None = "image/png", size: int = 1000
) -> mock.MagicMock:
    attachment = mock.MagicMock(spec_set=discord.Attachment)
    attachment.url = url
    attachment.filename = filename
    attachment.content_type = content_type
    attachment.size = size
    return attachment


def make_interaction(
    client: discord.Client,
    user: mock.MagicMock,
    channel: mock.MagicMock,
    *,
    data: dict[str, Any] | None = None,
    message: mock.MagicMock | None = None,
) -> mock.MagicMock:
    """An interaction whose response tracks is_done() like discord.py's, and whose follow-ups
    land in the channel (so reactions on them can be replayed)."""
    interaction = mock.MagicMock(spec_set=discord.Interaction)
    interaction.client = client
    interaction.user = user
    interaction.channel = channel
    interaction.channel_id = channel.id
    interaction.data = data or {}
    interaction.message = message
    interaction.command = None
    interaction.created_at = discord.utils.utcnow()
    done = {"value": False}

    response = mock.MagicMock(spec_set=discord.InteractionResponse)
    response.is_done.side_effect = lambda: done["value"]

    async def respond(*args: Any, **kwargs: Any) -> None:
        done["value"] = True

    for name in ("defer", "send_message", "edit_message"):
        setattr(response, name, mock.AsyncMock(side_effect=respond))
    interaction.response = response

    followup = mock.MagicMock(spec_set=discord.Webhook)

    async def followup_send(content: str | None = None, **kwargs: Any) -> mock.MagicMock:
        sent = make_message(client.user.id if client.user else 0, content=content, **kwargs)
        _posted.setdefault(channel, {})[sent.id] = sent
        return sent

    followup.send = mock.AsyncMock(side_effect=followup_send)
    interaction.followup = followup
    interaction.edit_original_response = mock.AsyncMock()
    return interaction


def make_reaction(
    emoji: str, *, user_id: int, channel_id: int, message_id: int, author_id: int | None = None
) -> mock.MagicMock:
    """`author_id`: the reacted message's author as the gateway event names it (None: not sent)."""
    payload = mock.MagicMock(spec_set=discord.RawReactionActionEvent)
    payload.emoji = discord.PartialEmoji(name=emoji)
    payload.user_id = user_id
    payload.channel_id = channel_id
    payload.message_id = message_id
    payload.message_author_id = author_id
    return payload


_DYNAMIC: tuple[tuple[re.Pattern[str], Any], ...] = (
    (PAGE_TEMPLATE, PageButton),
    (RATE_TEMPLATE, RateSelect),
    (REVIEW_TEMPLATE, ReviewButton),
)


async def press(interaction: mock.MagicMock, custom_id: str) -> None:
    """What discord.py's view store does for a component: match the dynamic item's template,
    rebuild the item from its custom id, run its callback."""
    for template, item_class in _DYNAMIC:
        match = template.fullmatch(custom_id)
        if match:
            item = await item_class.from_custom_id(interaction, discord.ui.Button(custom_id=custom_id), match)
            await item.callback(interaction)
            return
    raise AssertionError(f"no component handles {custom_id!r}")


def custom_ids(view: discord.ui.View) -> list[str]:
    return [str(getattr(child, "custom_id", "")) for child in view.children]
