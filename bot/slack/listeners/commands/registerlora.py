"""/registerlora (moderators): a modal asks for the link and metadata."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.permissions import NOT_A_MODERATOR
from bot.slack.blocks import register_modal
from bot.slack.messages import answer
from bot.slack.services import SlackServices, services_of


async def registerlora(
    ack: AsyncAck,
    command: dict[str, Any],
    context: AsyncBoltContext,
    client: AsyncWebClient,
    respond: AsyncRespond,
) -> None:
    await ack()
    services = services_of(context)
    services.work.spawn(
        _open(services, client, respond, str(command["user_id"]), str(command["trigger_id"])),
        "registerlora",
    )


async def _open(
    services: SlackServices, web: AsyncWebClient, respond: AsyncRespond, user_id: str, trigger_id: str
) -> None:
    if not await services.is_moderator(web, user_id):
        # Through the response_url: the command may come from a conversation the app is not in.
        await answer(respond, NOT_A_MODERATOR)
        return
    await web.views_open(trigger_id=trigger_id, view=register_modal())
