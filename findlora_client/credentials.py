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

# The service's default data directory (FINDLORA_DATA_DIR): here so that a client-only install
# (the bot image, without numpy) can find the `local` token without importing the service.
DEFAULT_DATA_DIR = Path(".findlora")
# `<data dir>/client-token`: the embedded database's `local` client token (the CLI's fallback).
LOCAL_TOKEN_FILE = "client-token"
TOKEN_HELP = (
    "set FINDLORA_TOKEN or FINDLORA_TOKEN_FILE to a findlora client token "
    "(an operator creates one with: findlora auth add NAME --role moderate)"
)


def read_secret(value: SecretStr | None, path: Path | None, variable: str = "the variable") -> str | None:
    """A secret from its file, which wins over the variable (containers mount secrets); None
    when neither is set or both are empty. Raises TokenMissing naming the file or `variable`
    (never the secret) when it holds what no token has: it would fail later inside gRPC."""
    if path is not None:
        where = f"the secret file {path}"
        try:
            # utf-8-sig: editors on Windows (PowerShell's Out-File among them) start with a BOM.
            secret = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TokenMissing(f"{where} is not UTF-8 text; write the secret alone in it") from None
    elif value is not None:
        where, secret = variable, value.get_secret_value()
    else:
        return None
    secret = secret.strip().removeprefix("\ufeff").strip()
    if any(not " " <= c <= "~" for c in secret):
        raise TokenMissing(
            f"{where} holds a character that no secret has (a control character, or one outside "
            "printable ASCII): set it to the secret alone, copied again from where it was issued"
        )
    return secret or None


def require_secret(value: SecretStr | None, path: Path | None, names: str) -> str:
    """The secret, or TokenMissing asking to set `names` ("VAR or VAR_FILE ..."): the first word
    is the variable."""
    secret = read_secret(value, path, names.split()[0])
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
        return read_secret(self.service_token, self.service_token_file, "FINDLORA_TOKEN")

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
            ca=_pem(self.service_ca, "FINDLORA_SERVICE_CA"),
            cert=_pem(self.client_cert, "FINDLORA_CLIENT_CERT"),
            key=_pem(self.client_key, "FINDLORA_CLIENT_KEY"),
        )


def _pem(path: Path | None, variable: str) -> bytes | None:
    """The file's bytes. gRPC takes any bytes and only fails each handshake later, reported as an
    unreachable service, so a file that is no PEM at all is refused here, by name."""
    if path is None:
        return None
    data = path.read_bytes()
    if b"-----BEGIN " not in data:
        raise OSError(f"{variable} ({path}) is not a PEM file (no -----BEGIN line)")
    return data


def connect(access: ServiceAccess, address: str, *, timeout: float) -> FindLoraClient:
    """A client of the service at `address` with the configured token and TLS."""
    return FindLoraClient(
        address, timeout=timeout, token=access.read_service_token(), tls=access.client_tls()
    )
