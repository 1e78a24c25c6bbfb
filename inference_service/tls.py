"""Optional TLS on the gRPC port (FINDLORA_TLS_CERT + FINDLORA_TLS_KEY), and mutual TLS when
FINDLORA_TLS_CLIENT_CA is set: clients must then present a certificate that CA signed."""

from __future__ import annotations

from pathlib import Path

import grpc
import structlog

from inference_service.config import Settings
from inference_service.errors import FailedPrecondition

log = structlog.get_logger(__name__)


class TlsConfigError(FailedPrecondition):
    pass


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {variable} {path}: {exc.strerror or exc}") from None


class _CertificateFiles:
    """The PEM files the port serves, read again when they change on disk.

    gRPC asks `fetch` at every new handshake (on one of its own threads): a certificate renewed in
    place (cert-manager rewrites a mounted Secret; docs/deploy.md) is served from the next
    connection on, without a restart. A file caught half-written, or unreadable, leaves the
    current certificate in use until the next handshake looks again."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.paths = [(cert, "FINDLORA_TLS_CERT"), (key, "FINDLORA_TLS_KEY")]
        if client_ca is not None:
            self.paths.append((client_ca, "FINDLORA_TLS_CLIENT_CA"))
        try:  # taken before the read, so a file replaced in between is read again at a handshake
            self.stamp = self._stamp()
        except OSError:
            self.stamp = ()  # the read below names the file it cannot read
        self.current = self.read()

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        return tuple((s.st_mtime_ns, s.st_size) for s in (path.stat() for path, _ in self.paths))

    def read(self) -> grpc.ServerCertificateConfiguration:
        chain, key, *ca = (_read(path, variable) for path, variable in self.paths)
        return grpc.ssl_server_certificate_configuration(
            [(key, chain)], root_certificates=ca[0] if ca else None
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None: unchanged (gRPC keeps what it has)."""
        try:
            stamp = self._stamp()
            if stamp == self.stamp:
                return None
            config = self.read()
        except (OSError, TlsConfigError) as exc:
            log.warning("tls_certificate_unreadable", error=str(exc))
            return None
        self.stamp, self.current = stamp, config
        log.info("tls_certificate_reloaded", files=[str(path) for path, _ in self.paths])
        return config


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """None: plaintext (the default, for loopback and private networks)."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise TlsConfigError("FINDLORA_TLS_CLIENT_CA needs FINDLORA_TLS_CERT and FINDLORA_TLS_KEY")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise TlsConfigError("set both FINDLORA_TLS_CERT and FINDLORA_TLS_KEY (PEM files), or neither")
    files = _CertificateFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return grpc.dynamic_ssl_server_credentials(
        files.current, files.fetch, require_client_authentication=settings.tls_client_ca is not None
    )
