"""How the CLI's client commands reach the service: FINDLORA_SERVICE, then the token from
FINDLORA_TOKEN, FINDLORA_TOKEN_FILE or `<FINDLORA_DATA_DIR>/client-token` (the embedded
database's `local` client), and the TLS settings every client shares.

The `local` token holds every role, and the address may come from a `.env` in whatever directory
the CLI runs in, so that last fallback is only for a service on this machine: a loopback address
or a unix socket."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from findlora.console import fail
from findlora_client import DEFAULT_ADDRESS, TokenMissing
from findlora_client.client import FindLoraClient
from findlora_client.credentials import (
    DEFAULT_DATA_DIR,
    LOCAL_TOKEN_FILE,
    TOKEN_HELP,
    ServiceAccess,
    connect,
    read_secret,
)


def _loopback_host(host_port: str) -> bool:
    """`host[:port]` names a loopback IP address or `localhost`; no other name is resolved (its
    DNS answer could point anywhere)."""
    if host_port.startswith("["):  # [v6]:port
        host = host_port[1:].partition("]")[0]
    else:
        with contextlib.suppress(ValueError):  # a bare IP address, `::1` among them
            return ipaddress.ip_address(host_port).is_loopback
        host = host_port.rpartition(":")[0] if ":" in host_port else host_port
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_address(address: str) -> bool:
    """Whether a gRPC target stays on this machine: a unix socket, 127.0.0.0/8, ::1 or localhost
    (with or without the dns:, ipv4: and ipv6: schemes)."""
    scheme, colon, rest = address.strip().partition(":")
    scheme = scheme.lower()
    if colon and scheme in ("unix", "unix-abstract"):
        return True
    if colon and scheme == "dns":
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority:  # a DNS server of the caller's choosing answers for the name
                return False
        return _loopback_host(rest)
    if colon and scheme in ("ipv4", "ipv6"):
        return all(_loopback_host(part) for part in rest.split(","))
    return _loopback_host(address.strip())


class CliAccess(ServiceAccess):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, validation_alias="FINDLORA_DATA_DIR")
    service: str = Field(DEFAULT_ADDRESS, validation_alias="FINDLORA_SERVICE")

    def read_service_token(self) -> str | None:
        """The configured token, else the `local` one when `service` is on this machine; raises
        TokenMissing rather than send that token anywhere else."""
        token = super().read_service_token()
        if token is not None:
            return token
        path = self.data_dir / LOCAL_TOKEN_FILE
        with contextlib.suppress(OSError):  # no local token: none to send
            token = read_secret(None, path)  # a damaged file is named, not a UnicodeDecodeError
        if token is not None and not is_local_address(self.service):
            raise TokenMissing(
                f"the service at {self.service} is not on this machine (a loopback address or a "
                f"unix socket), so the local client's token in {path} is not sent to it: {TOKEN_HELP}"
            )
        return token


def service_address() -> str:
    """FINDLORA_SERVICE from the environment or `.env`, else the local default."""
    return CliAccess().service


def service_client(address: str, timeout: float = 30.0) -> FindLoraClient:
    # The address dialled decides whether the local token may go (it may be --service's).
    access = CliAccess().model_copy(update={"service": address})
    try:
        return connect(access, address, timeout=timeout)
    except TokenMissing as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else str(exc))
