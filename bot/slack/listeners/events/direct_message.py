"""Files sent to the app's DM: artwork for an open lookalike report (in its thread), a list of
LoRAs to register (moderators; .txt, .toml or .json), otherwise a search like a mention."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.flagging import report_thread, submit_flag
from bot.slack.messages import Place
from bot.slack.registration import list_files, register_files
from bot.slack.search import search_files
from bot.slack.services import SlackServices, services_of


async def direct_message(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    # Edits, deletions and messages without files carry nothing to act on.
    if (
        event.get("channel_type") != "im"
        or not event.get("files")
        or event.get("subtype") not in (None, "file_share")
    ):
        return
    services = services_of(context)
    services.work.spawn(_handle(services, client, event, context.team_id), "direct-message")


async def _handle(
    services: SlackServices, web: AsyncWebClient, event: dict[str, Any], team_id: str | None
) -> None:
    channel, user_id = str(event["channel"]), str(event.get("user") or "")
    thread_ts = event.get("thread_ts")
    if thread_ts:
        request = await report_thread(
            web, channel=channel, thread_ts=str(thread_ts), team_id=team_id, user_id=user_id
        )
        if request is not None:
            await submit_flag(
                services,
                web,
                request=request,
                files=event["files"],
                channel=channel,
                thread_ts=str(thread_ts),
                team_id=team_id,
                user_id=user_id,
            )
            return
    place = Place(channel, str(thread_ts or event["ts"]))
    lists = list_files(event["files"])
    if lists:
        await register_files(services, web, files=lists, place=place, team_id=team_id, user_id=user_id)
        return
    await search_files(services, web, team_id=team_id, user_id=user_id, files=event["files"], place=place)
