"""Users' votes on search results: one vote per user, search and LoRA (a new vote replaces it).
The user is stored as a keyed pseudonym only (inference_service.pseudonyms)."""

from __future__ import annotations

from db import searches
from db.database import Database
from inference_service.errors import InvalidArgument, parse_id
from inference_service.pseudonyms import voter_pseudonym
from inference_service.search.engine import live_search

VOTES = {"up": 1, "down": -1}


async def record_feedback(
    db: Database, search_id: str, lora_id: int, vote: str, user: str, *, key: bytes
) -> bool:
    """Store the vote; True when it is the user's first on this result, False when it replaced one."""
    if vote not in VOTES:
        raise InvalidArgument("vote must be up or down")
    if not user:
        raise InvalidArgument("user is required")
    parsed = parse_id(search_id, "search id")
    stored = await live_search(db, parsed)
    rank = next(
        (i for i, item in enumerate(stored.ranking, start=1) if int(item["lora_id"]) == lora_id), None
    )
    if rank is None:
        raise InvalidArgument("that LoRA is not one of this search's results")
    return await db.run(
        searches.record_feedback,
        search_id=parsed,
        lora_id=lora_id,
        voter=voter_pseudonym(key, parsed, user),
        vote=VOTES[vote],
        rank=rank,
        base_model=str(stored.filters.get("base_model", "")),
    )
