"""Message shortcut "Find LoRA": search with the images of any message, answer in its thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.messages import Place
from bot.slack.search import search_files
from bot.slack.services import services_of

FIND_LORA = "find_lora"


async def find_lora(
    ack: AsyncAck,
    shortcut: dict[str, Any],
    context: AsyncBoltContext,
    client: AsyncWebClient,
    respond: AsyncRespond,
) -> None:
    await ack()
    services = services_of(context)
    message = shortcut.get("message") or {}
    place = Place(str(shortcut["channel"]["id"]), str(message.get("thread_ts") or message["ts"]))
    services.work.spawn(
        search_files(
            services,
            client,
            team_id=context.team_id,
            user_id=str(shortcut["user"]["id"]),
            files=message.get("files") or [],
            place=place,
            # The shortcut works in any conversation, also where the app is not a member.
            respond=respond,
        ),
        "search",
    )
