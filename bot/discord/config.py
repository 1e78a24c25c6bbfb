"""Discord bot configuration: environment (prefix FINDLORA_DISCORD_) or .env; token from
DISCORD_TOKEN or a secret file (DISCORD_TOKEN_FILE), never logged. The findlora client token and
TLS settings come from the shared FINDLORA_TOKEN(_FILE) / FINDLORA_SERVICE_CA ... (ServiceAccess)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bot.core.credentials import ServiceAccess

IdSet = Annotated[frozenset[int], NoDecode]


class TokenMissing(Exception):
    pass


class DiscordSettings(ServiceAccess):
    model_config = SettingsConfigDict(
        env_prefix="FINDLORA_DISCORD_", env_file=".env", extra="ignore", populate_by_name=True
    )

    token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DISCORD_TOKEN", "FINDLORA_DISCORD_TOKEN")
    )
    token_file: Path | None = Field(
        None, validation_alias=AliasChoices("DISCORD_TOKEN_FILE", "FINDLORA_DISCORD_TOKEN_FILE")
    )
    service: str = Field(
        "127.0.0.1:50051",
        validation_alias=AliasChoices("FINDLORA_DISCORD_SERVICE", "FINDLORA_SERVICE"),
        description="gRPC address of the inference service.",
    )
    guild_ids: IdSet = Field(
        frozenset(), description="Sync commands to these guilds at start (instant); empty: global sync."
    )
    moderator_role_ids: IdSet = frozenset()
    moderator_user_ids: IdSet = frozenset()
    review_channel_id: int | None = Field(None, description="Where lookalike review cards are posted.")

    default_top_k: int = Field(5, ge=1, le=10)
    search_timeout_s: float = 30.0
    call_timeout_s: float = 10.0
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    searches_per_minute: int = 6
    flags_per_hour: int = 5
    metrics_listen: str = Field("", description="host:port for Prometheus /metrics; empty disables it.")

    @field_validator("guild_ids", "moderator_role_ids", "moderator_user_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
        return value

    def read_token(self) -> str:
        """The bot token: the secret file wins over the variable (containers mount secrets)."""
        if self.token_file is not None:
            token = self.token_file.read_text(encoding="utf-8").strip()
        elif self.token is not None:
            token = self.token.get_secret_value().strip()
        else:
            token = ""
        if not token:
            raise TokenMissing("set DISCORD_TOKEN or DISCORD_TOKEN_FILE to the bot token")
        return token
