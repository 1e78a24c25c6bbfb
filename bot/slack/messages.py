"""Small Web API helpers shared by the features: the Web API client, telling one person something,
reading one of our messages back, attaching images to a thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.web.async_client import AsyncWebClient

log = structlog.get_logger(__name__)

# What a Web API call can raise: Slack's answers (ok false, a failed upload) and the network's.
WEB_ERRORS = (SlackClientError, aiohttp.ClientError, TimeoutError)
# Slack's answers when the app is not a member of the conversation (a DM between two people,
# a channel nobody invited it to).
_NOT_A_MEMBER = frozenset({"not_in_channel", "channel_not_found"})
# Slack's answers when the message is not there (as opposed to: it could not say).
_NO_SUCH_MESSAGE = frozenset({"thread_not_found", "message_not_found"})
NOT_HERE = (
    "I can't post in this conversation. Invite @findlora to this channel first, "
    "or send me the image in a direct message."
)
NOT_POSTED = "I couldn't post the results just now; please try again in a minute."


def web_client(token: str, base_url: str | None = None) -> AsyncWebClient:
    """The app's Web API client: Slack's default retry of a dropped connection, and up to two
    retries of a 429 after the Retry-After it names, so a burst does not drop answers."""
    handlers = [*async_default_handlers(), AsyncRateLimitErrorRetryHandler(max_retry_count=2)]
    if base_url is None:
        return AsyncWebClient(token=token, retry_handlers=handlers)
    return AsyncWebClient(token=token, base_url=base_url, retry_handlers=handlers)


def error_code(error: BaseException) -> str:
    """Slack's error code ('ratelimited', 'not_in_channel'), else the exception's kind."""
    data = getattr(error.response, "data", None) if isinstance(error, SlackApiError) else None
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or type(error).__name__)


def not_a_member(error: BaseException) -> bool:
    return error_code(error) in _NOT_A_MEMBER


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
    except WEB_ERRORS as error:
        log.info("ephemeral_failed", channel=place.channel, error=error_code(error))


async def answer(respond: AsyncRespond, text: str) -> None:
    """A line only this person sees, through the request's response_url: it reaches them in
    conversations the app is not a member of, where chat.postEphemeral cannot."""
    try:
        reply = await respond(text=text, response_type="ephemeral")
    except WEB_ERRORS as error:
        log.info("respond_failed", error=error_code(error))
        return
    if reply.status_code != 200:
        log.info("respond_failed", status=reply.status_code)


class MessageUnreadable(Exception):
    """Slack did not say whether the message is there (rate limit, network): it may well be."""


async def read_message(web: AsyncWebClient, channel: str, ts: str) -> dict[str, Any] | None:
    """One message by its ts, whether it is a thread reply or stands in the channel; None when
    Slack says there is none. Raises MessageUnreadable when it could not be asked."""
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
    except WEB_ERRORS as error:
        if error_code(error) in _NO_SUCH_MESSAGE:
            return None
        raise MessageUnreadable(error_code(error)) from error
    return None


async def fetch_message(web: AsyncWebClient, channel: str, ts: str) -> dict[str, Any] | None:
    """read_message for callers to whom an unreadable message is as good as none."""
    try:
        return await read_message(web, channel, ts)
    except MessageUnreadable as error:
        log.info("message_unreadable", channel=channel, error=str(error))
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
    except WEB_ERRORS as error:
        log.warning("upload_failed", channel=place.channel, error=error_code(error))
