"""Optional TLS on the gRPC port (FINDLORA_TLS_CERT + FINDLORA_TLS_KEY), and mutual TLS when
FINDLORA_TLS_CLIENT_CA is set: clients must then present a certificate that CA signed."""

from __future__ import annotations

from pathlib import Path

import grpc

from inference_service.config import Settings
from inference_service.errors import FailedPrecondition


class TlsConfigError(FailedPrecondition):
    pass


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {variable} {path}: {exc.strerror or exc}") from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """None: plaintext (the default, for loopback and private networks)."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise TlsConfigError("FINDLORA_TLS_CLIENT_CA needs FINDLORA_TLS_CERT and FINDLORA_TLS_KEY")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise TlsConfigError("set both FINDLORA_TLS_CERT and FINDLORA_TLS_KEY (PEM files), or neither")
    chain = _read(settings.tls_cert, "FINDLORA_TLS_CERT")
    key = _read(settings.tls_key, "FINDLORA_TLS_KEY")
    client_ca = (
        None if settings.tls_client_ca is None else _read(settings.tls_client_ca, "FINDLORA_TLS_CLIENT_CA")
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
