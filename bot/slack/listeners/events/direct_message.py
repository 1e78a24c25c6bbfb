"""Files sent to the app's DM: artwork for an open lookalike report (in its thread), a list of
LoRAs to register (moderators; .txt, .toml or .json), otherwise a search like a mention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.attachments import is_probably_image
from bot.slack.flagging import report_thread, submit_flag
from bot.slack.identity import file_info
from bot.slack.messages import MessageUnreadable, Place, tell
from bot.slack.registration import list_files, register_files
from bot.slack.search import search_files
from bot.slack.services import SlackServices, services_of

THREAD_UNREADABLE = "I couldn't read this thread just now; please send the images again in a minute."


async def direct_message(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    # Edits, deletions and messages without files carry nothing to act on.
    if (
        event.get("channel_type") != "im"
        or not event.get("files")
        or event.get("subtype") not in (None, "file_share")
    ):
        return
    services = services_of(context)
    if not services.handled.claim((str(event["channel"]), str(event["ts"]))):
        return  # Slack redelivered it: artwork would be filed, or a list registered, twice
    services.work.spawn(_handle(services, client, event, context.team_id), "direct-message")


async def _handle(
    services: SlackServices, web: AsyncWebClient, event: dict[str, Any], team_id: str | None
) -> None:
    channel, user_id = str(event["channel"]), str(event.get("user") or "")
    thread_ts = event.get("thread_ts")
    place = Place(channel, str(thread_ts or event["ts"]))
    if thread_ts:
        try:
            request = await report_thread(
                web, channel=channel, thread_ts=str(thread_ts), team_id=team_id, user_id=user_id
            )
        except MessageUnreadable:
            # It may be a report's thread: artwork must not turn into a search.
            await tell(web, place, user_id, THREAD_UNREADABLE)
            return
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
    files: Sequence[Mapping[str, Any]] = event["files"]
    lists = list_files(files)
    others = [file for file in files if file not in lists]
    if lists and (not others or (not _any_image(others) and await services.is_moderator(web, user_id))):
        await register_files(services, web, files=lists, place=place, team_id=team_id, user_id=user_id)
        return
    # Images with notes beside them (notes.txt) are a search, whoever sends them.
    await search_files(services, web, team_id=team_id, user_id=user_id, files=others, place=place)


def _any_image(files: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any file looks like an image; one without a link (shared from elsewhere) may be."""
    infos = [file_info(file) for file in files]
    return any(info is None or is_probably_image(info) for info in infos)
