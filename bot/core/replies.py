"""What the bot says when something goes wrong: short, actionable, never a stack trace."""

from __future__ import annotations

import grpc

from bot.core.attachments import AttachmentRejected
from bot.core.client import ServiceError, ServiceTimeout, ServiceUnreachable
from bot.core.metrics import BOT_ERRORS

SERVICE_DOWN = "The findlora service is not reachable right now. Please try again in a minute."
SERVICE_SLOW = "The findlora service took too long to answer. Please try again shortly."
NOTHING_MATCHES = (
    "No LoRA in the catalog matches that with the filters you gave. Try again without a base model filter."
)
EXPIRED = "This search has expired, run it again."
NO_IMAGE = "Attach an image (PNG, JPEG, WebP or GIF) to search with."
INTERNAL = "Something went wrong on my side; the moderators can find it in the logs."
NOT_ACCEPTED = (
    "The findlora service does not accept this bot's client token; the bot's operator must set "
    "FINDLORA_TOKEN or FINDLORA_TOKEN_FILE."
)


def friendly_error(error: BaseException) -> str:
    """The message for a failure the user can see; unknown failures get a generic line."""
    BOT_ERRORS.labels(type(error).__name__).inc()
    if isinstance(error, AttachmentRejected):
        return f"I can't use that image: {error.message}."
    if isinstance(error, ServiceUnreachable):
        return SERVICE_DOWN
    if isinstance(error, ServiceTimeout):
        return SERVICE_SLOW
    if isinstance(error, ServiceError):
        if error.code == grpc.StatusCode.FAILED_PRECONDITION and "expired" in error.message:
            return EXPIRED
        if error.code == grpc.StatusCode.INVALID_ARGUMENT:
            return f"I can't do that: {error.message}."
        if error.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return _sentence(error.message)
        if error.code == grpc.StatusCode.UNAUTHENTICATED:
            return NOT_ACCEPTED
        if error.code == grpc.StatusCode.PERMISSION_DENIED:
            return f"This bot is not allowed to do that ({error.message})."
        if error.code == grpc.StatusCode.UNIMPLEMENTED:
            return f"This findlora service does not support that yet ({error.message})."
        if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return "The findlora service is busy; please try again in a moment."
        return INTERNAL
    return INTERNAL


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return INTERNAL
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
