"""➡️ on a results message posts the next page; 👍/👎 rates its first result."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.messages import fetch_message
from bot.slack.search import next_page, reaction_kind, vote
from bot.slack.services import SlackServices, services_of


async def reaction_added(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    item = event.get("item") or {}
    kind = reaction_kind(str(event.get("reaction") or ""))
    # Only reactions on our own messages matter; the event says whose message it is.
    if kind is None or item.get("type") != "message" or event.get("item_user") != context.bot_user_id:
        return
    services = services_of(context)
    services.work.spawn(
        _handle(
            services, client, kind, str(item["channel"]), str(item["ts"]), context.team_id, str(event["user"])
        ),
        f"reaction-{kind}",
    )


async def _handle(
    services: SlackServices,
    web: AsyncWebClient,
    kind: str,
    channel: str,
    ts: str,
    team_id: str | None,
    user_id: str,
) -> None:
    message = await fetch_message(web, channel, ts)
    if message is None:
        return
    if kind == "next":
        await next_page(services, web, channel=channel, message=message, user_id=user_id)
    else:
        await vote(
            services, web, channel=channel, message=message, team_id=team_id, user_id=user_id, up=kind == "up"
        )
