"""A modal was submitted: check its fields in the modal, then start the work after the ack."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import submitted_values
from bot.slack.flagging import request_artwork
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


async def flag_submitted(
    ack: AsyncAck,
    body: dict[str, Any],
    view: dict[str, Any],
    context: AsyncBoltContext,
    client: AsyncWebClient,
) -> None:
    values = submitted_values(view)
    if not values.get("lora"):
        await ack(response_action="errors", errors={"lora": "Which LoRA? Give its link or slug."})
        return
    await ack()
    services = services_of(context)
    services.work.spawn(
        request_artwork(
            client,
            team_id=context.team_id,
            user_id=str(body["user"]["id"]),
            lora=values["lora"],
            note=values.get("note", ""),
        ),
        "flag-request",
    )
