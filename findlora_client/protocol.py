"""What the service and its clients agree on: the default address, request limits and the
machine-readable reasons the service attaches to the errors it raises on purpose."""

from __future__ import annotations

from enum import StrEnum

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_QUERY_IMAGES = 4  # images of one style per search
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # gRPC message cap, both directions
MAX_TEXT_CHARS = 1000  # a prompt, a name, a reason, a user id: what the service accepts per field
MAX_NOTE_CHARS = MAX_TEXT_CHARS  # a flag's note; the chats' input fields stop there, so nothing typed is lost
# Largest image the service decodes (checked from the header): 16.8 MP admits a 4x upscale of a
# 1024x1024 SDXL image; the bots check the same cap before they upload.
MAX_IMAGE_PIXELS = 4096 * 4096

# Trailing metadata of an error status: why it was refused, and when a retry may succeed.
REASON_TRAILER = "findlora-reason"
RETRY_AFTER_TRAILER = "retry-after-s"


class Reason(StrEnum):
    """Why a call failed. Specific reasons first; the generic ones mirror the status codes and
    stand in when the service gave none (gRPC's own errors)."""

    SEARCH_NOT_FOUND = "SEARCH_NOT_FOUND"
    SEARCH_EXPIRED = "SEARCH_EXPIRED"
    SEARCH_OUTDATED = "SEARCH_OUTDATED"  # made with an earlier style encoder: search again
    CATALOG_EMPTY = "CATALOG_EMPTY"
    CATALOG_STALE = "CATALOG_STALE"  # embedded with another style encoder than the service runs
    IMAGE_REJECTED = "IMAGE_REJECTED"
    RATE_LIMITED = "RATE_LIMITED"
    BUSY = "BUSY"
    REGISTRATION_DISABLED = "REGISTRATION_DISABLED"
    SOURCE_BUSY = "SOURCE_BUSY"  # a running job is registering this source already
    SLUG_TAKEN = "SLUG_TAKEN"  # another LoRA (another source) has this slug: give the entry a slug
    OWN_FLAG = "OWN_FLAG"  # a flag's reporter may dismiss it, not approve it
    DATABASE_TIMEOUT = "DATABASE_TIMEOUT"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"

    @classmethod
    def parse(cls, value: str | None, code: grpc.StatusCode) -> Reason:
        """The reason a trailer names; else (absent, or new to this client) the generic reason
        of the status code."""
        try:
            return cls(value or "")
        except ValueError:
            return _GENERIC.get(code, cls.INTERNAL)


_GENERIC = {code: Reason(code.name) for code in grpc.StatusCode if code.name in Reason.__members__}
_GENERIC[grpc.StatusCode.RESOURCE_EXHAUSTED] = Reason.BUSY
