"""`@findlora` on a message with images: search, answer in the message's thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.messages import Place
from bot.slack.search import search_files
from bot.slack.services import services_of


async def app_mention(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    # Events are acknowledged by bolt before this runs; the search itself goes to the background.
    services = services_of(context)
    place = Place(str(event["channel"]), str(event.get("thread_ts") or event["ts"]))
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
