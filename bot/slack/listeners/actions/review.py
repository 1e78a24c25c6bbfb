"""Approve / Dismiss on a lookalike review card."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import ACTION_APPROVE
from bot.slack.flagging import review
from bot.slack.services import services_of


async def review_flag(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
) -> None:
    await ack()
    services = services_of(context)
    action = body["actions"][0]
    services.work.spawn(
        review(
            services,
            client,
            flag_id=str(action["value"]),
            approve=action["action_id"] == ACTION_APPROVE,
            channel=str(body["channel"]["id"]),
            message_ts=str(body["message"]["ts"]),
            team_id=context.team_id,
            user_id=str(body["user"]["id"]),
        ),
        "review",
    )
