"""One search, whatever the chat: rate limit, download and check the images, ask the service,
render the page, or say in one friendly line why not. Each adapter answers through SearchReplies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import structlog

from bot.core.attachments import AttachmentInfo, AttachmentRejected, ImageLimits, download
from bot.core.ratelimit import RateLimiter, cooldown_message
from bot.core.rendering import ResultsPage, render_page
from bot.core.replies import NO_IMAGE, NOTHING_MATCHES, friendly_error
from findlora_client import MAX_QUERY_IMAGES, FindLoraClient, QueryImage, ServiceCallError

log = structlog.get_logger(__name__)


class SearchServices(Protocol):
    """What a search needs of a bot's services (both bots' services classes have it)."""

    client: FindLoraClient
    http: httpx.AsyncClient
    limits: ImageLimits
    search_limiter: RateLimiter

    @property
    def search_timeout_s(self) -> float: ...

    @property
    def download_headers(self) -> dict[str, str] | None: ...


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


async def download_all(services: SearchServices, infos: Sequence[AttachmentInfo]) -> list[QueryImage]:
    return [await download(info, services.limits, services.http, services.download_headers) for info in infos]


async def run_search(ask: SearchAsk, services: SearchServices, replies: SearchReplies) -> None:
    images = ask.images[:MAX_QUERY_IMAGES]
    if not images:
        await replies.say(NO_IMAGE)
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
            timeout=services.search_timeout_s,
        )
    except (AttachmentRejected, ServiceCallError) as error:
        reason = error.reason if isinstance(error, ServiceCallError) else ""
        log.info("search_refused", user=ask.user, kind=type(error).__name__, reason=reason)
        await replies.say(friendly_error(error))
        return
    page = render_page(response, ask.top_k, allow_nsfw=ask.allow_nsfw)
    log.info("search_done", user=ask.user, search_id=response.search_id, results=len(page.cards))
    if not page.cards:
        await replies.say(NOTHING_MATCHES)
        return
    await replies.show(page)
