"""One search, whatever the chat: rate limit, download and check the images, ask the service,
render the page, or say in one friendly line why not. Each adapter answers through SearchReplies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from bot.core.attachments import AttachmentInfo, AttachmentRejected, check_declared, download
from bot.core.paging import PageRef
from bot.core.ratelimit import cooldown_message
from bot.core.rendering import ResultsPage, render_page
from bot.core.replies import NO_IMAGE, NOTHING_MATCHES, friendly_error
from bot.core.services import ChatServices
from findlora_client import MAX_QUERY_IMAGES, QueryImage, ServiceCallError

log = structlog.get_logger(__name__)


class SearchReplies(Protocol):
    """How one chat answers the person who searched: `started` when the search goes ahead (it
    takes a while: Discord defers), `say` a line only they see, `show` the first page."""

    async def started(self) -> None: ...

    async def say(self, text: str) -> None: ...

    async def show(self, page: ResultsPage) -> None: ...


@dataclass(frozen=True)
class SearchAsk:
    user: str  # the opaque key the service stores (rate limits, feedback)
    images: Sequence[AttachmentInfo]
    top_k: int
    allow_nsfw: bool
    base_model: str = ""
    prompt: str | None = None


async def download_all(services: ChatServices[Any], infos: Sequence[AttachmentInfo]) -> list[QueryImage]:
    return [await download(info, services.limits, services.http, services.download_headers) for info in infos]


async def run_search(ask: SearchAsk, services: ChatServices[Any], replies: SearchReplies) -> None:
    images = ask.images[:MAX_QUERY_IMAGES]
    if not images:
        await replies.say(NO_IMAGE)
        return
    try:
        # What the chat declares (type, size) is checked before `started`: a refusal then is a
        # private first answer, never one left in a public "thinking…" message; no slot is spent.
        for info in images:
            check_declared(info, services.limits)
    except AttachmentRejected as rejected:
        log.info("search_refused", user=ask.user, kind=type(rejected).__name__, reason="")
        await replies.say(friendly_error(rejected))
        return
    wait = services.search_limiter.try_acquire(ask.user)
    if wait:
        await replies.say(cooldown_message("searching", wait))
        return
    await replies.started()
    try:
        queries = await download_all(services, images)
        response = await services.client.search(
            queries,
            top_k=ask.top_k,
            base_model=ask.base_model,
            allow_nsfw=ask.allow_nsfw,
            prompt=ask.prompt or None,
            requested_by=ask.user,
            timeout=services.settings.search_timeout_s,
        )
    except (AttachmentRejected, ServiceCallError) as error:
        reason = error.reason if isinstance(error, ServiceCallError) else ""
        log.info("search_refused", user=ask.user, kind=type(error).__name__, reason=reason)
        await replies.say(friendly_error(error))
        return
    page = render_page(response, ask.top_k, allow_nsfw=ask.allow_nsfw)
    # No search id beside the user: with it, the logs and the feedback key would name who cast
    # each vote (votes keep HMAC(key, search id + user)) long after the search is purged.
    log.info("search_done", user=ask.user, results=len(page.cards))
    if not page.cards:
        await replies.say(NOTHING_MATCHES)
        return
    await replies.show(page)


async def fetch_page(services: ChatServices[Any], target: PageRef, allow_nsfw: bool) -> ResultsPage:
    """Another page of a stored search (the ServiceCallError is the caller's to tell)."""
    response = await services.client.get_page(
        target.search_id,
        target.offset,
        target.limit,
        allow_nsfw=allow_nsfw,
        timeout=services.settings.call_timeout_s,
    )
    return render_page(response, target.limit, allow_nsfw=allow_nsfw)
