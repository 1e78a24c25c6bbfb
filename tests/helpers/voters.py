"""What the feedback table holds for a user: the service's keyed pseudonym, never the user id."""

from __future__ import annotations

import uuid

from inference_service.config import Settings
from inference_service.pseudonyms import feedback_key, voter_pseudonym


def pseudonym(settings: Settings, search_id: str, user: str) -> str:
    """The pseudonym the service running with `settings` stores for `user` on that search."""
    return voter_pseudonym(feedback_key(settings), uuid.UUID(search_id), user)
