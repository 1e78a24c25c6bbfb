"""Domain errors with the gRPC status and the machine-readable reason each maps to (the rpc
wrapper sends the reason as trailing metadata); messages are safe to show to users."""

from __future__ import annotations

import uuid
from typing import ClassVar

import grpc

from findlora_client.protocol import REASON_TRAILER, Reason


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason: ClassVar[Reason | None] = None  # None: the generic reason of `code`

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason or Reason.parse(None, self.code)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """Extra (key, value) pairs sent with the error status (e.g. a retry hint)."""
        return ()


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def reason_trailer(reason: Reason, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Trailing metadata of an error status: its reason, then any extra pairs."""
    return ((REASON_TRAILER, reason.value), *extra)


CATALOG_EMPTY = "catalog is empty: import one with findlora catalog import"


def parse_id(value: str, what: str) -> uuid.UUID:
    """A UUID from a request, or INVALID_ARGUMENT naming what it should have been."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"not a {what}: {value!r}") from None
