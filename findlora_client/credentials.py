"""How the bots and the CLI reach the inference service: the client token and TLS settings.

The same variables for every client process, whatever its own prefix: FINDLORA_TOKEN or
FINDLORA_TOKEN_FILE (a secret file, which wins), FINDLORA_SERVICE_CA (the CA that signed the
service's certificate), FINDLORA_CLIENT_CERT + FINDLORA_CLIENT_KEY (mutual TLS) and
FINDLORA_SERVICE_TLS (TLS with the system's CAs). Tokens are never logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from findlora_client.client import ClientTls, FindLoraClient
from findlora_client.errors import TokenMissing

# `<data dir>/client-token`: the embedded database's `local` client token (the CLI's fallback).
LOCAL_TOKEN_FILE = "client-token"
TOKEN_HELP = (
    "set FINDLORA_TOKEN or FINDLORA_TOKEN_FILE to a findlora client token "
    "(an operator creates one with: findlora auth add NAME --role moderate)"
)


def read_secret(value: SecretStr | None, path: Path | None) -> str | None:
    """A secret from its file, which wins over the variable (containers mount secrets); None
    when neither is set or both are empty."""
    if path is not None:
        secret = path.read_text(encoding="utf-8").strip()
    elif value is not None:
        secret = value.get_secret_value().strip()
    else:
        secret = ""
    return secret or None


def require_secret(value: SecretStr | None, path: Path | None, names: str) -> str:
    """The secret, or TokenMissing asking to set `names`."""
    secret = read_secret(value, path)
    if secret is None:
        raise TokenMissing(f"set {names}")
    return secret


class ServiceAccess(BaseSettings):
    """Fields shared by the bots' settings and the CLI's; each reads its own variable name."""

    service_token: SecretStr | None = Field(None, validation_alias="FINDLORA_TOKEN")
    service_token_file: Path | None = Field(None, validation_alias="FINDLORA_TOKEN_FILE")
    service_tls: bool = Field(
        False, validation_alias="FINDLORA_SERVICE_TLS", description="TLS to the service (system CAs)."
    )
    service_ca: Path | None = Field(
        None, validation_alias="FINDLORA_SERVICE_CA", description="PEM CA of the service's certificate."
    )
    client_cert: Path | None = Field(
        None, validation_alias="FINDLORA_CLIENT_CERT", description="PEM certificate for mutual TLS."
    )
    client_key: Path | None = Field(None, validation_alias="FINDLORA_CLIENT_KEY", description="Its key.")

    def read_service_token(self) -> str | None:
        return read_secret(self.service_token, self.service_token_file)

    def require_service_token(self) -> str:
        token = self.read_service_token()
        if token is None:
            raise TokenMissing(TOKEN_HELP)
        return token

    def client_tls(self) -> ClientTls | None:
        """None: plaintext. Raises OSError naming a file that cannot be read."""
        if (self.client_cert is None) != (self.client_key is None):
            raise OSError("set both FINDLORA_CLIENT_CERT and FINDLORA_CLIENT_KEY for mutual TLS, or neither")
        if not (self.service_tls or self.service_ca or self.client_cert):
            return None
        return ClientTls(
            ca=None if self.service_ca is None else self.service_ca.read_bytes(),
            cert=None if self.client_cert is None else self.client_cert.read_bytes(),
            key=None if self.client_key is None else self.client_key.read_bytes(),
        )


def connect(access: ServiceAccess, address: str, *, timeout: float) -> FindLoraClient:
    """A client of the service at `address` with the configured token and TLS."""
    return FindLoraClient(
        address, timeout=timeout, token=access.read_service_token(), tls=access.client_tls()
    )
