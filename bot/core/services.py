"""What both bots' features need, built once per process; each bot's services class adds its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from bot.core.attachments import ImageLimits
from bot.core.nsfw import NsfwPolicy
from bot.core.permissions import ModeratorPolicy
from bot.core.ratelimit import RateLimiter
from bot.core.settings import ChatBotSettings
from findlora_client import FindLoraClient

SettingsT = TypeVar("SettingsT", bound=ChatBotSettings)


@dataclass
class ChatServices(Generic[SettingsT]):
    settings: SettingsT
    client: FindLoraClient
    http: httpx.AsyncClient
    moderators: ModeratorPolicy
    nsfw: NsfwPolicy
    limits: ImageLimits
    search_limiter: RateLimiter
    flag_limiter: RateLimiter

    @property
    def download_headers(self) -> dict[str, str] | None:
        return None  # Discord's attachment links are signed; they need no credentials

    async def close(self) -> None:
        await self.client.close()
        await self.http.aclose()
