"""Settings both chat bots share; each bot's own class reads them under its prefix
(FINDLORA_DISCORD_…, FINDLORA_SLACK_…)."""

from __future__ import annotations

from pydantic import Field

from findlora_client.credentials import ServiceAccess
from findlora_client.protocol import MAX_IMAGE_PIXELS


class ChatBotSettings(ServiceAccess):
    metrics_listen: str = Field("", description="host:port for Prometheus /metrics; empty disables it.")
    default_top_k: int = Field(5, ge=1, le=10)
    search_timeout_s: float = 30.0
    call_timeout_s: float = 10.0
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, description="The service's cap, checked before upload.")
    searches_per_minute: int = 6
    flags_per_hour: int = 5
