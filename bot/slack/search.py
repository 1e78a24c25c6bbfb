"""Searching with shared images, paging with ➡️ or More, and rating with 👍/👎."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.attachments import AttachmentInfo, is_probably_image
from bot.core.paging import parse_footer, parse_lora_id, parse_total
from bot.core.rendering import ResultsPage, contact_sheet
from bot.core.replies import friendly_error
from bot.core.search_flow import SearchAsk, fetch_page, run_search
from bot.slack.blocks import has_more, paged_blocks, ref_text, results_blocks, results_text, transfers_comment
from bot.slack.identity import file_info, user_key
from bot.slack.messages import Place, tell, upload_images
from bot.slack.services import SlackServices
from findlora_client import ServiceCallError

log = structlog.get_logger(__name__)
NEXT_REACTIONS = frozenset({"arrow_right"})
UP_REACTIONS = frozenset({"+1", "thumbsup"})
DOWN_REACTIONS = frozenset({"-1", "thumbsdown"})
PAGE_REACTIONS = ("arrow_right", "+1", "-1")


class ThreadReplies:
    """Answers in the thread of the message searched with (SearchReplies)."""

    def __init__(self, web: AsyncWebClient, place: Place, user_id: str) -> None:
        self.web, self.place, self.user_id = web, place, user_id

    async def started(self) -> None:
        pass  # the listener acknowledged Slack already

    async def say(self, text: str) -> None:
        await tell(self.web, self.place, self.user_id, text)

    async def show(self, page: ResultsPage) -> None:
        await post_page(self.web, self.place, page)


async def attachments(web: AsyncWebClient, files: Sequence[Mapping[str, Any]]) -> list[AttachmentInfo]:
    """The image files of a message. Files shared from elsewhere (Slack Connect) can arrive without
    a download link; files.info has it."""
    found: list[AttachmentInfo] = []
    for file in files:
        info = file_info(file)
        if info is None and file.get("id"):
            try:
                info = file_info((await web.files_info(file=str(file["id"]))).get("file") or {})
            except SlackApiError as error:
                log.info("file_unreadable", error=error.response.get("error"))
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
) -> None:
    """Rank LoRAs for the images of one message and answer in its thread."""
    ask = SearchAsk(
        user=user_key(team_id, user_id),
        images=await attachments(web, files),
        top_k=services.settings.default_top_k,
        allow_nsfw=services.nsfw.allows(place.channel),
    )
    await run_search(ask, services, ThreadReplies(web, place, user_id))


async def post_page(web: AsyncWebClient, place: Place, page: ResultsPage) -> None:
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
    except SlackApiError as error:
        log.info("reactions_not_added", error=error.response.get("error"))
    sheets = []
    for card in page.cards:
        sheet = contact_sheet(card.transfers)
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
    except ServiceCallError as error:
        services.paged.release(key)  # nothing was posted: the next press may try again
        await tell(web, place, user_id, friendly_error(error))
        return
    await web.chat_update(
        channel=channel,
        ts=str(message["ts"]),
        text=str(message.get("text") or ""),
        blocks=paged_blocks(blocks),
    )
    if not page.cards:
        await tell(web, place, user_id, "No more results to show here.")
        return
    await post_page(web, place, page)


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
