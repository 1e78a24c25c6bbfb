"""Slack app configuration: environment (prefix FINDLORA_SLACK_) or .env. Tokens come from
SLACK_BOT_TOKEN / SLACK_APP_TOKEN / SLACK_SIGNING_SECRET or their *_FILE secret files (the file
wins, as containers mount secrets) and are never logged. The findlora client token and TLS
settings come from the shared FINDLORA_TOKEN(_FILE) / FINDLORA_SERVICE_CA ... (ServiceAccess)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bot.core.settings import ChatBotSettings
from findlora_client.credentials import require_secret
from findlora_client.protocol import DEFAULT_ADDRESS

IdSet = Annotated[frozenset[str], NoDecode]


def _secret(name: str) -> AliasChoices:
    return AliasChoices(name, f"FINDLORA_{name}")


class SlackSettings(ChatBotSettings):
    model_config = SettingsConfigDict(
        env_prefix="FINDLORA_SLACK_", env_file=".env", extra="ignore", populate_by_name=True
    )

    bot_token: SecretStr | None = Field(None, validation_alias=_secret("SLACK_BOT_TOKEN"))
    bot_token_file: Path | None = Field(None, validation_alias=_secret("SLACK_BOT_TOKEN_FILE"))
    app_token: SecretStr | None = Field(None, validation_alias=_secret("SLACK_APP_TOKEN"))
    app_token_file: Path | None = Field(None, validation_alias=_secret("SLACK_APP_TOKEN_FILE"))
    signing_secret: SecretStr | None = Field(None, validation_alias=_secret("SLACK_SIGNING_SECRET"))
    signing_secret_file: Path | None = Field(None, validation_alias=_secret("SLACK_SIGNING_SECRET_FILE"))

    mode: Literal["socket", "http"] = Field(
        "socket", description="socket: Socket Mode (app token, no public URL); http: Events API over HTTP."
    )
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    http_path: str = "/slack/events"

    service: str = Field(
        DEFAULT_ADDRESS,
        validation_alias=AliasChoices("FINDLORA_SLACK_SERVICE", "FINDLORA_SERVICE"),
        description="gRPC address of the inference service.",
    )
    moderator_usergroup_ids: IdSet = Field(frozenset(), description="User groups (S…) allowed to moderate.")
    moderator_user_ids: IdSet = Field(frozenset(), description="Users (U…) allowed to moderate.")
    review_channel_id: str | None = Field(None, description="Where lookalike review cards are posted.")
    nsfw_channel_ids: IdSet = Field(frozenset(), description="Channels where NSFW LoRAs may be shown.")

    usergroup_cache_s: float = Field(60.0, description="How long a user group's member list is reused.")

    @field_validator("moderator_usergroup_ids", "moderator_user_ids", "nsfw_channel_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part for part in value.replace(" ", "").split(",") if part)
        return value

    def read_bot_token(self) -> str:
        return require_secret(self.bot_token, self.bot_token_file, "SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE")

    def read_app_token(self) -> str:
        return require_secret(self.app_token, self.app_token_file, "SLACK_APP_TOKEN or SLACK_APP_TOKEN_FILE")

    def read_signing_secret(self) -> str:
        return require_secret(
            self.signing_secret,
            self.signing_secret_file,
            "SLACK_SIGNING_SECRET or SLACK_SIGNING_SECRET_FILE (needed in HTTP mode)",
        )
