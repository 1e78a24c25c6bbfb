"""Lookalike reports: the artist names the LoRA in a modal, sends artwork in a DM thread, the
moderators decide on a card in their channel, and the artist hears back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import flags
from bot.core.permissions import NOT_A_MODERATOR
from bot.core.rendering import contact_sheet
from bot.core.replies import friendly_error
from bot.slack.blocks import (
    FLAG_REQUEST_EVENT,
    FLAG_SENT_EVENT,
    flag_request_text,
    mrkdwn,
    review_blocks,
    review_text,
)
from bot.slack.identity import user_id_of, user_key
from bot.slack.messages import WEB_ERRORS, Place, error_code, read_message, tell, upload_images
from bot.slack.search import attachments
from bot.slack.services import SlackServices
from findlora_client import QueryImage, Reason, ServiceCallError
from protos import findlora_pb2 as pb

log = structlog.get_logger(__name__)
ALREADY_SENT = "This report is already with the moderators; run /flaglookalike again for another one."
ALREADY_REVIEWED = "This flag was already reviewed."
CARD_NOT_UPDATED = "The decision is saved and the artist told, but I couldn't update the card."


async def request_artwork(
    web: AsyncWebClient, *, team_id: str | None, user_id: str, lora: str, note: str
) -> None:
    """Ask for the artwork in the artist's DM with the app; the report's details ride along in
    the message's metadata, so any bot process can finish it."""
    await web.chat_postMessage(
        channel=user_id,
        text=flag_request_text(lora),
        metadata={
            "event_type": FLAG_REQUEST_EVENT,
            "event_payload": {"lora": lora, "note": note, "reporter": user_key(team_id, user_id)},
        },
    )


@dataclass(frozen=True)
class ReportThread:
    """A DM thread the app opened for a report: still waiting for artwork, or already sent."""

    sent: bool
    lora: str
    note: str


async def report_thread(
    web: AsyncWebClient, *, channel: str, thread_ts: str, team_id: str | None, user_id: str
) -> ReportThread | None:
    """The report this person's DM thread belongs to; None for any other thread. Raises
    MessageUnreadable when the thread's first message could not be read: it may be a report."""
    parent = await read_message(web, channel, thread_ts) or {}
    metadata = parent.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    if metadata.get("event_type") == FLAG_SENT_EVENT:
        return ReportThread(sent=True, lora="", note="")
    if metadata.get("event_type") != FLAG_REQUEST_EVENT or payload.get("reporter") != user_key(
        team_id, user_id
    ):
        return None
    return ReportThread(sent=False, lora=str(payload.get("lora") or ""), note=str(payload.get("note") or ""))


async def _sheet_upload(flag: pb.Flag, allow_nsfw: bool) -> list[dict[str, Any]]:
    # Decoding and resizing the thumbnails takes a while: off the event loop Bolt answers on.
    sheet = await asyncio.to_thread(contact_sheet, flags.evidence_transfers(flag, allow_nsfw=allow_nsfw))
    if sheet is None:
        return []
    return [{"file": sheet, "filename": "nearest-transfers.webp", "title": f"{flag.slug}: nearest transfers"}]


async def submit_flag(
    services: SlackServices,
    web: AsyncWebClient,
    *,
    request: ReportThread,
    files: Sequence[Mapping[str, Any]],
    channel: str,
    thread_ts: str,
    team_id: str | None,
    user_id: str,
) -> None:
    """File the report with the artwork sent in the request's DM thread."""
    if request.sent:
        await web.chat_postMessage(channel=channel, thread_ts=thread_ts, text=ALREADY_SENT)
        return
    ask = flags.FlagAsk(user_key(team_id, user_id), request.lora, await attachments(web, files), request.note)
    await flags.run_flag(ask, services, ReportThreadReplies(services, web, channel, thread_ts))


class ReportThreadReplies:
    """FlagReplies in the report's DM thread."""

    def __init__(self, services: SlackServices, web: AsyncWebClient, channel: str, thread_ts: str) -> None:
        self.services, self.web, self.thread_ts = services, web, thread_ts
        self.place = Place(channel, thread_ts)

    async def started(self) -> None:
        pass  # the listener acknowledged Slack already

    async def say(self, text: str) -> None:
        await self.web.chat_postMessage(channel=self.place.channel, thread_ts=self.place.thread_ts, text=text)

    async def filed(self, flag: pb.Flag, artworks: list[QueryImage]) -> None:
        await self._close_thread(flag)
        posted = await post_review_card(self.services, self.web, flag, artworks)
        allow_nsfw = self.services.nsfw.allows(self.place.channel)
        evidence = mrkdwn(flags.evidence_text(flag, allow_nsfw=allow_nsfw))
        await self.say(f"{evidence}\n{flags.follow_up_text(posted)}")
        await upload_images(
            self.web,
            self.place,
            await _sheet_upload(flag, allow_nsfw),
            "The LoRA's sample transfers nearest your artwork.",
        )

    async def _close_thread(self, flag: pb.Flag) -> None:
        """The report is filed: the thread stops accepting artwork for it."""
        try:
            await self.web.chat_update(
                channel=self.place.channel,
                ts=self.thread_ts,
                text=f"Report about `{flag.slug}` sent (flag {flag.flag_id}).",
                metadata={"event_type": FLAG_SENT_EVENT, "event_payload": {"flag_id": flag.flag_id}},
            )
        except WEB_ERRORS as error:
            # The flag is filed all the same: the card and the artist's answer must still go out
            # (the service refuses a second report of the same LoRA by the same artist).
            log.warning("report_thread_not_closed", flag_id=flag.flag_id, error=error_code(error))


async def post_review_card(
    services: SlackServices, web: AsyncWebClient, flag: pb.Flag, artworks: Sequence[QueryImage]
) -> bool:
    channel = services.settings.review_channel_id
    if not channel:
        log.warning("review_channel_missing", flag_id=flag.flag_id)
        return False
    try:
        blocks = review_blocks(flag, allow_nsfw=services.nsfw.allows(channel))
        card = await web.chat_postMessage(channel=channel, text=review_text(flag), blocks=blocks)
    except WEB_ERRORS as error:
        log.warning("review_card_failed", flag_id=flag.flag_id, error=error_code(error))
        return False
    images = await _sheet_upload(flag, services.nsfw.allows(channel)) + [
        {"file": art.data, "filename": flags.artwork_filename(i, art.content_type), "title": f"artwork {i}"}
        for i, art in enumerate(artworks, start=1)
    ]
    await upload_images(
        web, Place(channel, str(card["ts"])), images, "Artwork and the LoRA's nearest transfers."
    )
    return True


async def review(
    services: SlackServices,
    web: AsyncWebClient,
    *,
    flag_id: str,
    approve: bool,
    channel: str,
    message_ts: str,
    team_id: str | None,
    user_id: str,
) -> None:
    """Approve (take down) or dismiss, from the review card; only moderators, only there. Refusals
    go beside the card, not into its thread (which holds the artwork), where the one who pressed
    the button would not see them."""
    place = Place(channel, None)
    if channel != services.settings.review_channel_id or not await services.is_moderator(web, user_id):
        await tell(web, place, user_id, NOT_A_MODERATOR)
        return
    moderator = user_key(team_id, user_id)
    try:
        flag = await services.client.review_flag(
            flag_id, approve=approve, moderator=moderator, timeout=services.settings.call_timeout_s
        )
    except ServiceCallError as error:
        # Decided before: the service's words name the reviewer by an internal key.
        already = error.reason is Reason.FAILED_PRECONDITION
        await tell(web, place, user_id, ALREADY_REVIEWED if already else friendly_error(error))
        return
    log.info("flag_reviewed", flag_id=flag_id, decision=flags.status_label(flag), by=moderator)
    # The decision is stored: the artist hears of it whatever becomes of the card.
    await tell_artist(web, flag)
    try:
        blocks = review_blocks(flag, allow_nsfw=services.nsfw.allows(channel))
        await web.chat_update(channel=channel, ts=message_ts, text=review_text(flag), blocks=blocks)
    except WEB_ERRORS as error:
        log.warning("review_card_not_updated", flag_id=flag_id, error=error_code(error))
        await tell(web, place, user_id, CARD_NOT_UPDATED)


async def tell_artist(web: AsyncWebClient, flag: pb.Flag) -> None:
    artist = user_id_of(flag.reporter)
    if artist is None:
        return
    try:
        await web.chat_postMessage(channel=artist, text=mrkdwn(flags.outcome_text(flag)))
    except WEB_ERRORS as error:
        # The decision stands and is audited; the artist can ask a moderator.
        log.info("artist_not_told", flag_id=flag.flag_id, error=error_code(error))
