"""Stored searches (kept for paging and votes until they expire), their feedback, their purge."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import numpy as np

from db.database import Connection
from db.rows import FeedbackVote, StoredSearch, as_array


async def save_search(
    conn: Connection,
    *,
    query: np.ndarray,
    pseudo_prompt: str,
    ranking: list[dict[str, Any]],
    filters: dict[str, Any],
    requested_by: str,
    ttl_hours: float,
    encoder: str | None = None,
) -> tuple[uuid.UUID, datetime]:
    search_id = uuid.uuid4()
    cur = await conn.execute(
        """
        INSERT INTO searches (id, query_embedding, pseudo_prompt, ranking, filters, requested_by,
                              expires_at, encoder)
        VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s), %s)
        RETURNING expires_at
        """,
        (
            search_id,
            query,
            pseudo_prompt,
            json.dumps(ranking),
            json.dumps(filters),
            requested_by,
            ttl_hours * 3600.0,
            encoder,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return search_id, row[0]


async def get_search(conn: Connection, search_id: uuid.UUID) -> StoredSearch | None:
    cur = await conn.execute(
        "SELECT id, query_embedding, pseudo_prompt, ranking, filters, expires_at,"
        " expires_at <= now(), encoder FROM searches WHERE id = %s",
        (search_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return StoredSearch(row[0], as_array(row[1]), row[2], row[3], row[4], row[5], bool(row[6]), row[7])


async def record_feedback(
    conn: Connection,
    *,
    search_id: uuid.UUID,
    lora_id: int,
    voter: str,
    vote: int,
    rank: int | None,
    base_model: str,
) -> bool:
    """Store a vote; a voter's second vote on the same result replaces the first.
    `voter` is the user's pseudonym (inference_service.pseudonyms), never the user id.
    Returns True when this is the voter's first vote on it."""
    cur = await conn.execute(
        """
        INSERT INTO feedback (search_id, lora_id, voter, vote, rank, base_model)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (search_id, lora_id, voter) DO UPDATE
            SET vote = excluded.vote, rank = excluded.rank, created_at = now()
        RETURNING (xmax = 0) AS inserted
        """,
        (search_id, lora_id, voter, vote, rank, base_model),
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


async def votes(conn: Connection, search_id: uuid.UUID) -> list[tuple[int, str, int]]:
    """(lora_id, voter pseudonym, vote) of one search, for reports and tests."""
    cur = await conn.execute(
        "SELECT lora_id, voter, vote FROM feedback WHERE search_id = %s ORDER BY lora_id, voter", (search_id,)
    )
    return [(int(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]


async def feedback_votes(conn: Connection, since: datetime | None = None) -> list[FeedbackVote]:
    """Every counted vote (one per user, search and LoRA), with the LoRA's base model."""
    cur = await conn.execute(
        """
        SELECT f.search_id, f.voter, f.rank, f.vote, l.base_model, f.created_at
        FROM feedback f JOIN loras l ON l.id = f.lora_id
        WHERE f.rank IS NOT NULL AND (%(since)s::timestamptz IS NULL OR f.created_at >= %(since)s)
        ORDER BY f.created_at
        """,
        {"since": since},
    )
    return [
        FeedbackVote(str(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]), r[5])
        for r in await cur.fetchall()
    ]


async def delete_expired_searches(conn: Connection, batch: int = 1000) -> int:
    """Delete every expired search (embedding, pseudo-prompt, ranking, requester); returns
    how many. In batches, each its own short transaction (committed here); SKIP LOCKED lets
    replicas purging at the same moment share the work instead of waiting on each other's rows."""
    deleted = 0
    while True:
        cur = await conn.execute(
            "DELETE FROM searches WHERE id IN (SELECT id FROM searches WHERE expires_at <= now()"
            " LIMIT %s FOR UPDATE SKIP LOCKED)",
            (batch,),
        )
        await conn.commit()
        deleted += cur.rowcount
        if cur.rowcount < batch:
            return deleted
