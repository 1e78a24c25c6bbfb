"""A real Slack app (AsyncApp, signed requests) against a real in-process service and catalog;
only Slack itself is replaced, by a local mock Web API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.slack.app import create_app
from bot.slack.config import SlackSettings
from bot.slack.messages import web_client
from bot.slack.services import SlackServices
from db.clients import Role
from findlora_client.credentials import connect
from inference_service.config import Settings
from tests.helpers.jobs import WATCH_POLL_S, JobDriver
from tests.helpers.service import ServedCatalog, served_catalog
from tests.helpers.slack_fakes import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FilesToMock,
    MockSlackApi,
    SignedSender,
)

CHANNEL = "C0GENERAL"
NSFW_CHANNEL = "C0NSFW"
REVIEW_CHANNEL = "C0REVIEW"
MODERATOR = "U0MOD"
GROUP_MODERATOR = "U0GROUPMOD"
MOD_GROUP = "S0MODS"
USER = "U0ALICE"
ARTIST = "U0ARTIST"


@dataclass
class SlackHarness:
    served: ServedCatalog
    api: MockSlackApi
    apps: list[SlackServices] = field(default_factory=list)

    def settings(self, role: Role = Role.MODERATE, **overrides: Any) -> SlackSettings:
        """The app's settings; its findlora client holds `role` (a moderating app: moderate)."""
        values: dict[str, Any] = {
            "service": self.served.address,
            "service_token": SecretStr(self.served.tokens[role]),
            "moderator_user_ids": frozenset({MODERATOR}),
            "moderator_usergroup_ids": frozenset({MOD_GROUP}),
            "review_channel_id": REVIEW_CHANNEL,
            "nsfw_channel_ids": frozenset({NSFW_CHANNEL}),
            "default_top_k": 5,
            **overrides,
        }
        return SlackSettings(**values)

    def start(self, role: Role = Role.MODERATE, **overrides: Any) -> tuple[SignedSender, SlackServices]:
        """A fresh app process (two of them = a restart) talking to the mock Web API, with the
        production Web API client (its retries included)."""
        settings = self.settings(role, **overrides)
        web = web_client(BOT_TOKEN, base_url=f"{self.api.base_url}/api/")
        http = httpx.AsyncClient(transport=FilesToMock(self.api.port), follow_redirects=False)
        client = connect(settings, settings.service, timeout=settings.call_timeout_s)
        services = SlackServices.create(settings, client, http, BOT_TOKEN)
        self.apps.append(services)
        app = create_app(services, web, signing_secret=SIGNING_SECRET)
        return SignedSender(app, response_url=self.api.response_url), services

    def style_file(self, slug: str, name: str | None = None) -> dict[str, Any]:
        return self.api.share_file(name or f"{slug}.png", self.served.reference_bytes(slug))


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
async def slack_api() -> AsyncIterator[MockSlackApi]:
    api = MockSlackApi(usergroups={MOD_GROUP: [GROUP_MODERATOR]})
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def harness(served: ServedCatalog, slack_api: MockSlackApi) -> AsyncIterator[SlackHarness]:
    harness = SlackHarness(served, slack_api)
    yield harness
    for services in harness.apps:
        await services.close()
