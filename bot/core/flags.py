"""Lookalike flags: one report flow whatever the chat (each adapter answers through FlagReplies),
and the flag as text for the artist and the moderators' review card."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from bot.core.attachments import AttachmentInfo, AttachmentRejected
from bot.core.ratelimit import cooldown_message
from bot.core.rendering import TransferImage
from bot.core.replies import friendly_error
from bot.core.search_flow import download_all
from bot.core.services import ChatServices
from findlora_client import QueryImage, ServiceCallError
from protos import findlora_pb2 as pb

log = structlog.get_logger(__name__)
MAX_ARTWORKS = 3
NO_ARTWORK = "Send an image of your artwork (PNG, JPEG, WebP or GIF)."


class FlagReplies(Protocol):
    """How one chat answers the artist: `started` when the report goes ahead, `say` a line for
    them, `filed` once the service holds the flag (review card, evidence)."""

    async def started(self) -> None: ...

    async def say(self, text: str) -> None: ...

    async def filed(self, flag: pb.Flag, artworks: list[QueryImage]) -> None: ...


@dataclass(frozen=True)
class FlagAsk:
    reporter: str  # the opaque key the service stores
    lora: str
    artworks: Sequence[AttachmentInfo]
    note: str


async def run_flag(ask: FlagAsk, services: ChatServices[Any], replies: FlagReplies) -> None:
    infos = ask.artworks[:MAX_ARTWORKS]
    if not infos:
        await replies.say(NO_ARTWORK)
        return
    wait = services.flag_limiter.try_acquire(ask.reporter)
    if wait:
        await replies.say(cooldown_message("reporting", wait))
        return
    await replies.started()
    try:
        artworks = await download_all(services, infos)
        flag = await services.client.flag_lookalike(
            ask.lora,
            artworks,
            note=ask.note,
            reporter=ask.reporter,
            timeout=services.settings.search_timeout_s,
        )
    except (AttachmentRejected, ServiceCallError) as error:
        # Nothing was filed: a wrong file or LoRA name must not cost one of the few reports an hour.
        services.flag_limiter.release(ask.reporter)
        await replies.say(friendly_error(error))
        return
    log.info("lookalike_flagged", flag_id=flag.flag_id, lora=flag.slug, reporter=ask.reporter)
    await replies.filed(flag, artworks)


def follow_up_text(review_card_posted: bool) -> str:
    where = "" if review_card_posted else " from the flag list"
    return f"The moderators will review it{where}; I'll message you with the outcome."


_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


NSFW_TRANSFERS_HIDDEN = "The LoRA is marked NSFW: its sample transfers are not shown in this channel."


def evidence_transfers(flag: pb.Flag, *, allow_nsfw: bool) -> list[TransferImage]:
    """The LoRA's sample transfers nearest the artwork that still have a thumbnail; none of an
    NSFW LoRA where the channel does not allow NSFW (the community rule search follows)."""
    if flag.nsfw and not allow_nsfw:
        return []
    return [
        TransferImage(t.sample_id, f"{t.sample_id}.webp", t.thumbnail, t.mime_type, t.distance)
        for t in flag.evidence.nearest_transfers
        if t.thumbnail
    ]


def artwork_filename(number: int, content_type: str) -> str:
    return f"artwork-{number}{_SUFFIXES.get(content_type, '.img')}"


def evidence_text(flag: pb.Flag, *, allow_nsfw: bool) -> str:
    evidence = flag.evidence
    text = (
        f"Among {evidence.catalog_size} LoRAs, `{flag.slug}` ranks **#{evidence.rank}** for your artwork "
        f"(style distance {evidence.style_distance:.3f}; lower is closer)."
    )
    return f"{text} {NSFW_TRANSFERS_HIDDEN}" if flag.nsfw and not allow_nsfw else text


def outcome_text(flag: pb.Flag) -> str:
    if flag.status == pb.FLAG_STATUS_APPROVED:
        return f"Your lookalike report about `{flag.slug}` was approved: the LoRA has been taken down."
    if flag.status == pb.FLAG_STATUS_DISMISSED:
        # Not "it stays listed": another report may have taken it down meanwhile.
        return f"Your lookalike report about `{flag.slug}` was reviewed and dismissed."
    return f"Your lookalike report about `{flag.slug}` is waiting for review."


def status_label(flag: pb.Flag) -> str:
    return pb.FlagStatus.Name(flag.status).removeprefix("FLAG_STATUS_").lower()
