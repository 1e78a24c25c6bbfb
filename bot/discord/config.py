"""Discord bot configuration: environment (prefix FINDLORA_DISCORD_) or .env; token from
DISCORD_TOKEN or a secret file (DISCORD_TOKEN_FILE), never logged. The findlora client token and
TLS settings come from the shared FINDLORA_TOKEN(_FILE) / FINDLORA_SERVICE_CA ... (ServiceAccess)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bot.core.settings import ChatBotSettings
from findlora_client.credentials import require_secret
from findlora_client.protocol import DEFAULT_ADDRESS

IdSet = Annotated[frozenset[int], NoDecode]


class DiscordSettings(ChatBotSettings):
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
        DEFAULT_ADDRESS,
        validation_alias=AliasChoices("FINDLORA_DISCORD_SERVICE", "FINDLORA_SERVICE"),
        description="gRPC address of the inference service.",
    )
    guild_ids: IdSet = Field(
        frozenset(), description="Sync commands to these guilds at start (instant); empty: global sync."
    )
    moderator_role_ids: IdSet = frozenset()
    moderator_user_ids: IdSet = frozenset()
    review_channel_id: int | None = Field(None, description="Where lookalike review cards are posted.")

    @field_validator("guild_ids", "moderator_role_ids", "moderator_user_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
        return value

    def read_token(self) -> str:
        return require_secret(
            self.token, self.token_file, "DISCORD_TOKEN or DISCORD_TOKEN_FILE to the bot token"
        )
