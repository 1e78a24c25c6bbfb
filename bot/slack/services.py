"""What every listener needs, built once per process and handed to listeners through the
bolt context (listeners keep the starter template's `register(app)` shape)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.attachments import ImageLimits
from bot.core.nsfw import NsfwPolicy
from bot.core.permissions import ModeratorPolicy
from bot.core.ratelimit import RateLimiter
from bot.core.services import ChatServices
from bot.slack.config import SlackSettings
from bot.slack.identity import SLACK_FILE_HOSTS
from bot.slack.messages import WEB_ERRORS, error_code
from bot.slack.work import Background
from findlora_client import FindLoraClient

log = structlog.get_logger(__name__)
CONTEXT_KEY = "findlora"


class UserGroups:
    """Members of the moderators' user groups, fetched with usergroups.users.list and reused for
    a short while: a permission check must not cost a Web API call every time."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def members(self, web: AsyncWebClient, group_id: str) -> frozenset[str]:
        cached = self._members.get(group_id)
        now = self._clock()
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            reply = await web.usergroups_users_list(usergroup=group_id)
            users = frozenset(str(u) for u in reply.get("users") or [])
        except WEB_ERRORS as error:
            # Fail closed: an unreadable group grants nobody anything.
            log.warning("usergroup_unreadable", usergroup=group_id, error=error_code(error))
            return frozenset()
        self._members[group_id] = (now, users)
        return users


class SeenOnce:
    """Keys seen once, the last `keep` of them: two presses of More (or More and a ➡️) arrive with
    the same message, More button included, so the button alone cannot tell them apart; and Slack
    redelivers an event it thinks was missed."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self.seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def claim(self, key: tuple[str, str]) -> bool:
        """True the first time `key` is claimed (until released)."""
        if key in self.seen:
            return False
        self.seen[key] = None
        while len(self.seen) > self.keep:
            self.seen.popitem(last=False)
        return True

    def release(self, key: tuple[str, str]) -> None:
        self.seen.pop(key, None)


@dataclass
class SlackServices(ChatServices[SlackSettings]):
    bot_token: str = field(repr=False)
    usergroups: UserGroups
    work: Background
    # Results messages whose next page this process has taken on (search.next_page).
    paged: SeenOnce = field(default_factory=lambda: SeenOnce())
    # Mentions and DMs this process has taken on, by (channel, ts): a redelivery is not again.
    handled: SeenOnce = field(default_factory=lambda: SeenOnce())

    @classmethod
    def create(
        cls, settings: SlackSettings, client: FindLoraClient, http: httpx.AsyncClient, bot_token: str
    ) -> SlackServices:
        return cls(
            settings=settings,
            client=client,
            http=http,
            bot_token=bot_token,
            moderators=ModeratorPolicy.of(settings.moderator_usergroup_ids, settings.moderator_user_ids),
            nsfw=NsfwPolicy.of(settings.nsfw_channel_ids),
            limits=ImageLimits(
                max_bytes=settings.max_image_bytes,
                max_pixels=settings.max_image_pixels,
                allowed_hosts=SLACK_FILE_HOSTS,
            ),
            search_limiter=RateLimiter(settings.searches_per_minute, 60),
            flag_limiter=RateLimiter(settings.flags_per_hour, 3600),
            usergroups=UserGroups(settings.usergroup_cache_s),
            work=Background(),
        )

    @property
    def download_headers(self) -> dict[str, str]:
        """Slack serves private files only with the bot token; `download` sends it to
        files.slack.com alone (host allowlist, no redirects)."""
        return {"Authorization": f"Bearer {self.bot_token}"}

    async def is_moderator(self, web: AsyncWebClient, user_id: str) -> bool:
        if self.moderators.allows(user_id):
            return True
        groups = [
            g for g in sorted(self.moderators.role_ids) if user_id in await self.usergroups.members(web, g)
        ]
        return self.moderators.allows(user_id, groups)

    async def close(self, grace_s: float = 30.0) -> None:
        try:
            await self.work.drain(timeout_s=grace_s)
        except TimeoutError:
            log.warning("slack_work_abandoned_at_shutdown")
        await super().close()


def services_of(context: Mapping[str, Any]) -> SlackServices:
    services = context[CONTEXT_KEY]
    assert isinstance(services, SlackServices)
    return services
