"""`@findlora` on a message with images: search, answer in the message's thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.messages import Place
from bot.slack.search import search_files
from bot.slack.services import services_of


def is_edit(event: dict[str, Any]) -> bool:
    """Editing a message that mentions the app sends app_mention again (same ts, same files)."""
    return bool(event.get("edited")) or event.get("subtype") == "message_changed"


async def app_mention(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    # Events are acknowledged by bolt before this runs; the search itself goes to the background.
    services = services_of(context)
    channel, ts = str(event["channel"]), str(event["ts"])
    # Each mention is searched once: not again when it is edited, nor when Slack redelivers it.
    if is_edit(event) or not services.handled.claim((channel, ts)):
        return
    place = Place(channel, str(event.get("thread_ts") or ts))
    services.work.spawn(
        search_files(
            services,
            client,
            team_id=context.team_id,
            user_id=str(event.get("user") or ""),
            files=event.get("files") or [],
            place=place,
        ),
        "search",
    )
