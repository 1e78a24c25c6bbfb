"""Failed calls as the client raises them: a message written for the person who asked, the status
code, and the service's machine-readable reason (decide by `reason`, never by the message)."""

from __future__ import annotations

import grpc

from findlora_client.protocol import Reason


class ServiceCallError(Exception):
    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        reason: Reason | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        # Without one from the service: the generic reason of the code.
        self.reason = reason or Reason.parse(None, code or grpc.StatusCode.INTERNAL)
        self.retry_after_s = retry_after_s  # from the service's retry hint, when it gave one


class ServiceUnreachable(ServiceCallError):
    pass


class TlsHandshakeFailed(ServiceUnreachable):
    """The service answers but the TLS handshake fails: a setting to fix, not a service to start."""


class ServiceTimeout(ServiceCallError):
    pass


class TokenMissing(Exception):
    """A token or secret the process needs is not configured, or is not usable as one; the message
    names its variable or file, never the secret."""
