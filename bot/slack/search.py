"""Searching with shared images, paging with ➡️ or More, and rating with 👍/👎."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.attachments import AttachmentInfo, is_probably_image
from bot.core.paging import parse_footer, parse_lora_id, parse_total
from bot.core.rendering import ResultsPage, contact_sheet
from bot.core.replies import friendly_error
from bot.core.search_flow import SearchAsk, fetch_page, run_search
from bot.slack.blocks import has_more, paged_blocks, ref_text, results_blocks, results_text, transfers_comment
from bot.slack.identity import file_info, user_key
from bot.slack.messages import (
    NOT_HERE,
    NOT_POSTED,
    WEB_ERRORS,
    Place,
    answer,
    error_code,
    not_a_member,
    tell,
    upload_images,
)
from bot.slack.services import SlackServices
from findlora_client import ServiceCallError

log = structlog.get_logger(__name__)
NEXT_REACTIONS = frozenset({"arrow_right"})
UP_REACTIONS = frozenset({"+1", "thumbsup"})
DOWN_REACTIONS = frozenset({"-1", "thumbsdown"})
PAGE_REACTIONS = ("arrow_right", "+1", "-1")
NO_MORE = "No more results to show here."
PAGE_NOT_POSTED = "I couldn't post the next page just now; please try again in a minute."


class ThreadReplies:
    """Answers in the thread of the message searched with (SearchReplies). With `respond` (a
    shortcut's response_url) the lines only the searcher sees go there: the app may not be a
    member of that conversation."""

    def __init__(
        self, web: AsyncWebClient, place: Place, user_id: str, respond: AsyncRespond | None = None
    ) -> None:
        self.web, self.place, self.user_id, self.respond = web, place, user_id, respond

    async def started(self) -> None:
        pass  # the listener acknowledged Slack already

    async def say(self, text: str) -> None:
        if self.respond is not None:
            await answer(self.respond, text)
        else:
            await tell(self.web, self.place, self.user_id, text)

    async def show(self, page: ResultsPage) -> None:
        try:
            await post_page(self.web, self.place, page)
        except WEB_ERRORS as error:
            log.warning("results_not_posted", channel=self.place.channel, error=error_code(error))
            await self.say(NOT_HERE if not_a_member(error) else NOT_POSTED)


async def attachments(web: AsyncWebClient, files: Sequence[Mapping[str, Any]]) -> list[AttachmentInfo]:
    """The image files of a message. Files shared from elsewhere (Slack Connect) can arrive without
    a download link; files.info has it."""
    found: list[AttachmentInfo] = []
    for file in files:
        info = file_info(file)
        if info is None and file.get("id"):
            try:
                info = file_info((await web.files_info(file=str(file["id"]))).get("file") or {})
            except WEB_ERRORS as error:
                log.info("file_unreadable", error=error_code(error))
        if info is not None and is_probably_image(info):
            found.append(info)
    return found


async def search_files(
    services: SlackServices,
    web: AsyncWebClient,
    *,
    team_id: str | None,
    user_id: str,
    files: Sequence[Mapping[str, Any]],
    place: Place,
    respond: AsyncRespond | None = None,
) -> None:
    """Rank LoRAs for the images of one message and answer in its thread."""
    ask = SearchAsk(
        user=user_key(team_id, user_id),
        images=await attachments(web, files),
        top_k=services.settings.default_top_k,
        allow_nsfw=services.nsfw.allows(place.channel),
    )
    await run_search(ask, services, ThreadReplies(web, place, user_id, respond))


async def post_page(web: AsyncWebClient, place: Place, page: ResultsPage) -> None:
    """The results message, then its hints and pictures; raises only when the message itself
    was not posted."""
    posted = await web.chat_postMessage(
        channel=place.channel,
        thread_ts=place.thread_ts,
        text=results_text(page),
        blocks=results_blocks(page),
        unfurl_links=False,
        unfurl_media=False,
    )
    try:
        for name in PAGE_REACTIONS:  # hints; people can add them themselves too
            await web.reactions_add(channel=place.channel, timestamp=str(posted["ts"]), name=name)
    except WEB_ERRORS as error:
        log.info("reactions_not_added", error=error_code(error))
    sheets = []
    for card in page.cards:
        sheet = await asyncio.to_thread(contact_sheet, card.transfers)  # off Bolt's event loop
        if sheet:
            sheets.append(
                {"file": sheet, "filename": f"result-{card.rank}.webp", "title": f"#{card.rank} {card.title}"}
            )
    await upload_images(web, place, sheets, transfers_comment(page))


async def next_page(
    services: SlackServices, web: AsyncWebClient, *, channel: str, message: Mapping[str, Any], user_id: str
) -> None:
    """Post the page after the one in `message` (one of our results) in its thread, once."""
    blocks = message.get("blocks") or []
    footer = ref_text(blocks)
    current = parse_footer(footer)
    target = current.next(parse_total(footer)) if current else None
    key = (channel, str(message["ts"]))
    if target is None or not has_more(blocks) or not services.paged.claim(key):
        return
    place = Place(channel, str(message.get("thread_ts") or message["ts"]))
    try:
        page = await fetch_page(services, target, services.nsfw.allows(channel))
        if page.cards:
            await post_page(web, place, page)
    except (ServiceCallError, *WEB_ERRORS) as error:
        # Nothing was posted and the More button is still there: the next press may try again.
        services.paged.release(key)
        refused = isinstance(error, ServiceCallError)  # by the service; else Slack failed us
        log.info("next_page_failed", channel=channel, error=error_code(error))
        await tell(web, place, user_id, friendly_error(error) if refused else PAGE_NOT_POSTED)
        return
    await _drop_more(web, channel, message)
    if not page.cards:
        await tell(web, place, user_id, NO_MORE)


async def _drop_more(web: AsyncWebClient, channel: str, message: Mapping[str, Any]) -> None:
    """The page after `message` is posted: its More button goes, so no one posts that page again."""
    try:
        await web.chat_update(
            channel=channel,
            ts=str(message["ts"]),
            text=str(message.get("text") or ""),
            blocks=paged_blocks(message.get("blocks") or []),
        )
    except WEB_ERRORS as error:
        # The claim this process holds still stops a second post; the new page pages on by itself.
        log.info("more_button_kept", channel=channel, error=error_code(error))


async def vote(
    services: SlackServices,
    web: AsyncWebClient,
    *,
    channel: str,
    message: Mapping[str, Any],
    team_id: str | None,
    user_id: str,
    up: bool,
) -> None:
    """A 👍/👎 on a results message rates the first result it shows."""
    footer = ref_text(message.get("blocks") or [])
    current, lora_id = parse_footer(footer), parse_lora_id(footer)
    if current is None or lora_id is None:
        return
    try:
        await services.client.record_feedback(
            current.search_id,
            lora_id,
            up=up,
            user=user_key(team_id, user_id),
            timeout=services.settings.call_timeout_s,
        )
    except ServiceCallError as error:
        place = Place(channel, str(message.get("thread_ts") or message["ts"]))
        await tell(web, place, user_id, friendly_error(error))


def reaction_kind(name: str) -> str | None:
    """'next', 'up', 'down' or None; skin tones (`+1::skin-tone-3`) count as the base emoji."""
    base = name.split("::", 1)[0]
    if base in NEXT_REACTIONS:
        return "next"
    if base in UP_REACTIONS:
        return "up"
    if base in DOWN_REACTIONS:
        return "down"
    return None
