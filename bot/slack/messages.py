"""Small Web API helpers shared by the features: telling one person something, reading one of
our messages back, attaching images to a thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Place:
    """A thread: answers to a message go under it, never into the channel itself."""

    channel: str
    thread_ts: str | None


async def tell(web: AsyncWebClient, place: Place, user_id: str, text: str) -> None:
    """A line only this person sees, in the thread it is about."""
    try:
        await web.chat_postEphemeral(
            channel=place.channel, user=user_id, text=text, thread_ts=place.thread_ts
        )
    except SlackApiError as error:
        log.info("ephemeral_failed", channel=place.channel, error=error.response.get("error"))


async def fetch_message(web: AsyncWebClient, channel: str, ts: str) -> dict[str, Any] | None:
    """One message by its ts, whether it is a thread reply or stands in the channel."""
    try:
        reply = await web.conversations_replies(
            channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True, include_all_metadata=True
        )
        for message in reply.get("messages") or []:
            if message.get("ts") == ts:
                return dict(message)
        history = await web.conversations_history(
            channel=channel, oldest=ts, latest=ts, inclusive=True, limit=1
        )
        for message in history.get("messages") or []:
            if message.get("ts") == ts:
                return dict(message)
    except SlackApiError as error:
        log.info("message_unreadable", channel=channel, error=error.response.get("error"))
    return None


async def upload_images(
    web: AsyncWebClient, place: Place, images: Sequence[Mapping[str, Any]], comment: str
) -> None:
    """Post images into the thread in one files_upload_v2 call; a failed upload costs only the
    pictures, never the answer they illustrate."""
    if not images:
        return
    try:
        await web.files_upload_v2(
            file_uploads=[dict(image) for image in images],
            channel=place.channel,
            thread_ts=place.thread_ts,
            initial_comment=comment,
        )
    except SlackApiError as error:
        log.warning("upload_failed", channel=place.channel, error=error.response.get("error"))
