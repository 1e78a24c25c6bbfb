"""What the bot says when something goes wrong: short, actionable, never a stack trace."""

from __future__ import annotations

import re

from bot.core.attachments import AttachmentRejected
from bot.core.metrics import BOT_ERRORS
from bot.core.ratelimit import wait_text
from findlora_client import Reason, ServiceCallError, ServiceTimeout, ServiceUnreachable

SERVICE_DOWN = "The findlora service is not reachable right now. Please try again in a minute."
SERVICE_SLOW = "The findlora service took too long to answer. Please try again shortly."
# The service answered, its database did not: the same advice as an unreachable service.
CATALOG_DOWN = "The findlora catalog is unavailable right now. Please try again in a minute."
SERVICE_BUSY = "The findlora service is busy; please try again in a moment."
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
# A typed option can be thousands of characters; said back whole it pushed a reply past Discord's
# 2000-character limit, and the person saw nothing at all.
MAX_ECHO_CHARS = 100
MAX_SERVICE_MESSAGE_CHARS = 1000
# A quoted span as a Python repr writes one; a word's apostrophe ("LoRA's") opens none.
_QUOTED = re.compile(r"""(?<!\w)(['"])((?:\\.|(?!\1).)*)\1(?!\w)""", re.DOTALL)
# Reasons whose message is written for the person who asked: shown as it is.
_SAID_AS_IS = frozenset(
    {
        Reason.NOT_FOUND,
        Reason.FAILED_PRECONDITION,
        Reason.OWN_FLAG,
        Reason.ALREADY_EXISTS,
        Reason.CATALOG_EMPTY,
        Reason.CATALOG_STALE,
        Reason.REGISTRATION_DISABLED,
    }
)


def friendly_error(error: BaseException) -> str:
    """The message for a failure the user can see, chosen by the service's reason (never by the
    message's text); unknown failures get a generic line."""
    BOT_ERRORS.labels(type(error).__name__).inc()
    if isinstance(error, AttachmentRejected):
        return f"I can't use that image: {error.message}."
    if isinstance(error, ServiceUnreachable):
        return SERVICE_DOWN
    if isinstance(error, ServiceTimeout):
        return SERVICE_SLOW
    if not isinstance(error, ServiceCallError):
        return INTERNAL
    reason = error.reason
    if reason in (Reason.SEARCH_EXPIRED, Reason.SEARCH_NOT_FOUND, Reason.SEARCH_OUTDATED):
        # The bots' searches come from their own messages: a missing one was purged, and one made
        # before the style encoder changed is as good as expired.
        return EXPIRED
    if reason == Reason.RATE_LIMITED:
        wait = wait_text(error.retry_after_s) if error.retry_after_s else "a moment"
        return f"The findlora service is getting too many requests from you; try again in {wait}."
    message = shorten_echoes(error.message)
    if reason in (Reason.INVALID_ARGUMENT, Reason.IMAGE_REJECTED):
        return f"I can't do that: {message}."
    if reason in _SAID_AS_IS:
        return _sentence(message)
    if reason == Reason.UNAUTHENTICATED:
        return NOT_ACCEPTED
    if reason == Reason.PERMISSION_DENIED:
        return f"This bot is not allowed to do that ({message})."
    if reason == Reason.UNIMPLEMENTED:
        return f"This findlora service does not support that yet ({message})."
    if reason == Reason.BUSY:
        return SERVICE_BUSY
    if reason == Reason.DATABASE_UNAVAILABLE:
        return CATALOG_DOWN
    return INTERNAL


def echo(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """What the user typed, said back to them: at most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten_echoes(message: str) -> str:
    """A service message with what the user typed quoted in it ("no LoRA matches '…'"), each
    quote shortened, and the whole kept well inside a chat message."""
    shortened = _QUOTED.sub(lambda m: m[1] + echo(m[2]) + m[1], message)
    return echo(shortened, MAX_SERVICE_MESSAGE_CHARS)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return INTERNAL
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
