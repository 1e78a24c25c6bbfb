"""A real FindLoraBot (never logged in) against a real in-process service and catalog; only
Discord's API and the attachment CDN are faked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from pydantic import SecretStr

from bot.discord.bot import BotServices, FindLoraBot
from bot.discord.config import DiscordSettings
from db.clients import Role
from findlora_client.credentials import connect
from inference_service.config import Settings
from tests.helpers.discord_fakes import make_attachment, make_channel, make_member, make_reaction
from tests.helpers.jobs import WATCH_POLL_S, JobDriver
from tests.helpers.service import ServedCatalog, served_catalog

BOT_ID = 999
GUILD_ID = 1
MOD_ROLE = 77
MODERATOR_ID = 5
REVIEW_CHANNEL = 300
CDN = "https://cdn.discordapp.com/attachments/1/2/"


@dataclass
class Harness:
    served: ServedCatalog
    cdn: dict[str, bytes] = field(default_factory=dict)
    bots: list[FindLoraBot] = field(default_factory=list)

    def settings(self, role: Role = Role.MODERATE, **overrides: Any) -> DiscordSettings:
        """The bot's settings; its findlora client holds `role` (a moderating bot: moderate)."""
        values: dict[str, Any] = {
            "service": self.served.address,
            "service_token": SecretStr(self.served.tokens[role]),
            "moderator_role_ids": frozenset({MOD_ROLE}),
            "review_channel_id": REVIEW_CHANNEL,
            "default_top_k": 5,
            **overrides,
        }
        return DiscordSettings(**values)

    async def bot(self, role: Role = Role.MODERATE, **overrides: Any) -> FindLoraBot:
        """A fresh bot process with every extension loaded (two of them = a restart)."""
        settings = self.settings(role, **overrides)

        def serve_cdn(request: httpx.Request) -> httpx.Response:
            body = self.cdn.get(str(request.url))
            return httpx.Response(200, content=body) if body is not None else httpx.Response(404)

        http = httpx.AsyncClient(transport=httpx.MockTransport(serve_cdn))
        client = connect(settings, settings.service, timeout=settings.call_timeout_s)
        bot = FindLoraBot(BotServices.create(settings, client, http))
        await bot.load_extensions()
        self.bots.append(bot)
        return bot

    def upload(self, name: str, data: bytes, content_type: str | None = "image/png") -> Any:
        self.cdn[CDN + name] = data
        return make_attachment(CDN + name, name, content_type, len(data))

    def style_image(self, slug: str, name: str | None = None) -> Any:
        return self.upload(name or f"{slug}.png", self.served.reference_bytes(slug))


@pytest.fixture
async def served(settings: Settings, tmp_path: Path) -> AsyncIterator[ServedCatalog]:
    settings = settings.model_copy(update={"watch_poll_seconds": WATCH_POLL_S})
    async with served_catalog(settings, tmp_path, n_loras=12, n_samples=4, nsfw=(5,)) as served:
        yield served


@pytest.fixture
async def jobs(served: ServedCatalog) -> AsyncIterator[JobDriver]:
    """Moves the service's registration jobs along in place of a worker."""
    driver = JobDriver(served.service.runtime.db)
    yield driver
    await driver.end_unfinished()


@pytest.fixture
def bot_user() -> Iterator[mock.MagicMock]:
    user = make_member(BOT_ID)
    with mock.patch.object(FindLoraBot, "user", new_callable=mock.PropertyMock, return_value=user):
        yield user


@pytest.fixture
async def harness(served: ServedCatalog, bot_user: mock.MagicMock) -> AsyncIterator[Harness]:
    harness = Harness(served)
    yield harness
    for bot in harness.bots:
        await bot.close()


@pytest.fixture
def channel() -> mock.MagicMock:
    return make_channel(100, bot_id=BOT_ID)


@pytest.fixture
def review_channel() -> mock.MagicMock:
    return make_channel(REVIEW_CHANNEL, bot_id=BOT_ID)


@pytest.fixture
def channels(channel: mock.MagicMock, review_channel: mock.MagicMock) -> dict[int, mock.MagicMock]:
    return {channel.id: channel, review_channel.id: review_channel}


def route_channels(bot: FindLoraBot, channels: dict[int, mock.MagicMock]) -> Any:
    return mock.patch.object(bot, "get_channel", side_effect=channels.get)


def reaction(
    emoji: str,
    *,
    user_id: int,
    channel_id: int,
    message_id: int,
    author_id: int | None = None,
    bot: bool = False,
    in_dm: bool = False,
) -> Any:
    """A reaction event as the gateway sends it: in a guild with the reacting member (a bot or
    not), in a DM with neither guild nor member."""
    payload = make_reaction(
        emoji, user_id=user_id, channel_id=channel_id, message_id=message_id, author_id=author_id
    )
    if in_dm:
        payload.guild_id, payload.member = None, None
    else:
        member = make_member(user_id)
        member.bot = bot
        payload.guild_id, payload.member = GUILD_ID, member
    return payload
