"""Users' votes on search results: one vote per user, search and LoRA (a new vote replaces it)."""

from __future__ import annotations

import uuid

from db.repository import Repository
from inference_service.errors import FailedPrecondition, InvalidArgument, NotFound

VOTES = {"up": 1, "down": -1}


async def record_feedback(repo: Repository, search_id: str, lora_id: int, vote: str, user: str) -> bool:
    """Store the vote; True when it is the user's first on this result, False when it replaced one."""
    if vote not in VOTES:
        raise InvalidArgument("vote must be up or down")
    if not user:
        raise InvalidArgument("user is required")
    try:
        parsed = uuid.UUID(search_id)
    except ValueError:
        raise InvalidArgument(f"not a search id: {search_id!r}") from None
    stored = await repo.get_search(parsed)
    if stored is None:
        raise NotFound("no such search: run it again")
    if stored.expired:
        raise FailedPrecondition("this search has expired, run it again")
    rank = next(
        (i for i, item in enumerate(stored.ranking, start=1) if int(item["lora_id"]) == lora_id), None
    )
    if rank is None:
        raise InvalidArgument("that LoRA is not one of this search's results")
    return await repo.record_feedback(
        search_id=parsed,
        lora_id=lora_id,
        user=user,
        vote=VOTES[vote],
        rank=rank,
        base_model=str(stored.filters.get("base_model", "")),
    )
