"""Voters' pseudonyms: feedback stores HMAC-SHA256(key, search id + user id), never the user id.

Scoped to the search, a pseudonym still makes one vote per user and result (the database's
unique key) but does not link one person's votes across searches. The key is a secret setting
(FINDLORA_FEEDBACK_KEY or FINDLORA_FEEDBACK_KEY_FILE); without one, a key is generated once under
the data directory (mode 0600), which suits the embedded database and replicas sharing that
directory. Changing the key starts new pseudonyms: a user's re-vote on a search voted on before
the change counts as a new voter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from pathlib import Path

import structlog

from inference_service.config import Settings
from inference_service.private_files import write_private

GENERATED_KEY_NAME = "feedback.key"
MIN_KEY_CHARS = 32
log = structlog.get_logger(__name__)


class FeedbackKeyError(ValueError):
    """The configured feedback key cannot be used; the message says which setting and why."""


def voter_pseudonym(key: bytes, search_id: uuid.UUID, user: str) -> str:
    message = f"{search_id}\n{user}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def feedback_key(settings: Settings) -> bytes:
    """The HMAC key: FINDLORA_FEEDBACK_KEY, else FINDLORA_FEEDBACK_KEY_FILE, else the generated one."""
    if settings.feedback_key is not None:
        return _checked(settings.feedback_key.get_secret_value(), "FINDLORA_FEEDBACK_KEY")
    if settings.feedback_key_file is not None:
        path = settings.feedback_key_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FeedbackKeyError(
                f"FINDLORA_FEEDBACK_KEY_FILE {path} cannot be read: {exc.strerror}"
            ) from None
        return _checked(text, f"FINDLORA_FEEDBACK_KEY_FILE {path}")
    path = settings.data_dir / GENERATED_KEY_NAME
    return _checked(_read_or_create(path), str(path))


def _checked(text: str, source: str) -> bytes:
    key = text.strip()
    if len(key) < MIN_KEY_CHARS:
        raise FeedbackKeyError(
            f"{source} must hold at least {MIN_KEY_CHARS} characters (e.g. openssl rand -hex 32)"
        )
    return key.encode()


def _read_or_create(path: Path) -> str:
    """The key file's text, creating it (0600) first if absent; when processes start together,
    the first key linked into place is the one every process uses."""
    if not path.exists() and write_private(path, secrets.token_hex(32), replace=False):
        log.info("feedback_key_generated", path=str(path))
    return path.read_text(encoding="utf-8")
