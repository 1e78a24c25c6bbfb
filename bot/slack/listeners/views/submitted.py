"""The registration modal was submitted: check the fields in the modal, then start the job."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import submitted_values
from bot.slack.registration import invalid_fields, register
from bot.slack.services import services_of


async def register_submitted(
    ack: AsyncAck,
    body: dict[str, Any],
    view: dict[str, Any],
    context: AsyncBoltContext,
    client: AsyncWebClient,
) -> None:
    values = submitted_values(view)
    errors = invalid_fields(values)
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    await ack()
    services = services_of(context)
    services.work.spawn(
        register(services, client, values=values, team_id=context.team_id, user_id=str(body["user"]["id"])),
        "register",
    )
