"""/flaglookalike: a modal asks which LoRA and why; the artwork follows in a DM thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import flag_modal
from bot.slack.services import services_of


async def flaglookalike(
    ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
) -> None:
    await ack()
    # Anyone may report; the rate limit applies when the artwork arrives and the report is filed.
    services_of(context).work.spawn(_open(client, str(command["trigger_id"])), "flaglookalike")


async def _open(web: AsyncWebClient, trigger_id: str) -> None:
    await web.views_open(trigger_id=trigger_id, view=flag_modal())
