"""How the CLI's client commands reach the service: FINDLORA_SERVICE, then the token from
FINDLORA_TOKEN, FINDLORA_TOKEN_FILE or `<FINDLORA_DATA_DIR>/client-token` (the embedded
database's `local` client), and the TLS settings every client shares."""

from __future__ import annotations

import contextlib
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from findlora.console import fail
from findlora_client import DEFAULT_ADDRESS
from findlora_client.client import FindLoraClient
from findlora_client.credentials import LOCAL_TOKEN_FILE, ServiceAccess, connect
from inference_service.config import DEFAULT_DATA_DIR


class CliAccess(ServiceAccess):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, validation_alias="FINDLORA_DATA_DIR")
    service: str = Field(DEFAULT_ADDRESS, validation_alias="FINDLORA_SERVICE")

    def read_service_token(self) -> str | None:
        token = super().read_service_token()
        if token is None:
            with contextlib.suppress(OSError):
                token = (self.data_dir / LOCAL_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
        return token


def service_address() -> str:
    """FINDLORA_SERVICE from the environment or `.env`, else the local default."""
    return CliAccess().service


def service_client(address: str, timeout: float = 30.0) -> FindLoraClient:
    try:
        return connect(CliAccess(), address, timeout=timeout)
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else str(exc))
