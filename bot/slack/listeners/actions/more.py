"""The More button under a results page: the next page in the same thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.search import next_page
from bot.slack.services import services_of


async def more(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
) -> None:
    await ack()
    services = services_of(context)
    # The payload carries the message as it is now: no need to read it back. Its thread is
    # named by the container when the message object leaves it out.
    message = {"thread_ts": (body.get("container") or {}).get("thread_ts"), **body["message"]}
    services.work.spawn(
        next_page(
            services,
            client,
            channel=str(body["channel"]["id"]),
            message=message,
            user_id=str(body["user"]["id"]),
        ),
        "more",
    )
