"""Versioned style encoders: the registry of every encoder that was ever active, the lock that
keeps stored embeddings and the active label in step, and the snapshot check of searches."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg.rows import dict_row

from db.database import Connection

# catalog_meta key of the active style encoder's label (db.catalog re-exports it).
ENCODER_KEY = "style_encoder"
# When `adapt_catalog` last ran (kept or refused): registrations are counted from there.
ADAPT_RUN_KEY = "adapt_last_run"
# Set by a rollback: the worker adapts no more until an operator runs `catalog adapt` by hand
# (otherwise the next scheduled run would activate much the same encoder again).
ADAPT_PAUSE_KEY = "adapt_paused"

Guard = Callable[[Connection], Awaitable[None]]


class EncoderChanged(Exception):
    """The active encoder is not the one the caller embedded with: embed again with `active`."""

    def __init__(self, expected: str, active: str) -> None:
        super().__init__(f"the style encoder changed from {expected} to {active}")
        self.expected = expected
        self.active = active


@dataclass(frozen=True)
class EncoderRow:
    label: str
    blob_key: str
    parent: str | None
    created_at: datetime
    activated_at: datetime | None
    metrics: dict[str, Any]
    note: str


_COLUMNS = "label, blob_key, parent, created_at, activated_at, metrics, note"


async def get_encoder(conn: Connection, label: str) -> EncoderRow | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM style_encoders WHERE label = %s", (label,))
    row = await cur.fetchone()
    return None if row is None else EncoderRow(**row)


async def list_encoders(conn: Connection) -> list[EncoderRow]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM style_encoders ORDER BY created_at, label")
    return [EncoderRow(**row) for row in await cur.fetchall()]


async def add_encoder(
    conn: Connection,
    label: str,
    blob_key: str,
    *,
    parent: str | None = None,
    metrics: dict[str, Any] | None = None,
    note: str = "",
) -> bool:
    """Register an encoder once (a label names fixed weights); True when this call added it."""
    cur = await conn.execute(
        "INSERT INTO style_encoders (label, blob_key, parent, metrics, note) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (label) DO NOTHING",
        (label, blob_key, parent, json.dumps(metrics or {}), note),
    )
    return cur.rowcount == 1


# The active label (one row or none), for a statement of its own or as a scalar subquery.
ACTIVE_LABEL_SQL = "SELECT value FROM catalog_meta WHERE key = %s"


async def active_label(conn: Connection) -> str | None:
    cur = await conn.execute(ACTIVE_LABEL_SQL, (ENCODER_KEY,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def lock_label(conn: Connection, label: str, *, exclusive: bool = False) -> str:
    """Inside a transaction: the active label, its row locked until the commit (FOR SHARE for
    writers of embeddings, FOR UPDATE for an activation). An empty catalog takes `label`."""
    await conn.execute(
        "INSERT INTO catalog_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (ENCODER_KEY, label),
    )
    mode = "UPDATE" if exclusive else "SHARE"
    cur = await conn.execute(f"SELECT value FROM catalog_meta WHERE key = %s FOR {mode}", (ENCODER_KEY,))
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def require_label(conn: Connection, label: str) -> None:
    """Writers of embeddings, inside their transaction: hold the label (an activation waits for
    the commit) and refuse with EncoderChanged when it is not the one they embedded with."""
    active = await lock_label(conn, label)
    if active != label:
        raise EncoderChanged(label, active)


@dataclass(frozen=True)
class LabelGuard:
    """A search connection's check (db.database.search_connection): the active label, read in
    the snapshot that ranks, is the one the query was embedded with. A Guard; `verify` checks a
    label read elsewhere in that snapshot (db.summaries.generation_and_label)."""

    label: str

    async def __call__(self, conn: Connection) -> None:
        self.verify(await active_label(conn))

    def verify(self, active: str | None) -> None:
        if active is not None and active != self.label:
            raise EncoderChanged(self.label, active)


def label_guard(label: str) -> LabelGuard:
    return LabelGuard(label)


async def set_active(conn: Connection, label: str) -> None:
    """Inside the activation's transaction (holding lock_label(exclusive=True))."""
    await conn.execute("UPDATE catalog_meta SET value = %s WHERE key = %s", (label, ENCODER_KEY))
    await conn.execute("UPDATE style_encoders SET activated_at = now() WHERE label = %s", (label,))


async def replace_embeddings(conn: Connection, rows: Sequence[tuple[int, str, np.ndarray]]) -> None:
    """Set (lora_id, sample_id) -> embedding for many references at once (a temp table, one UPDATE)."""
    await conn.execute(
        "CREATE TEMP TABLE new_embeddings (lora_id bigint, sample_id text, embedding halfvec(128))"
        " ON COMMIT DROP"
    )
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY new_embeddings (lora_id, sample_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "text", "halfvec"])
        for lora_id, sample_id, embedding in rows:
            await copy.write_row((lora_id, sample_id, HalfVector(np.asarray(embedding, dtype=np.float32))))
    await conn.execute(
        "UPDATE reference_images r SET embedding = n.embedding FROM new_embeddings n"
        " WHERE r.lora_id = n.lora_id AND r.sample_id = n.sample_id"
    )


async def reference_keys(conn: Connection) -> list[tuple[int, str, str]]:
    """(lora_id, sample_id, blob_key) of every reference: what an activation embeds."""
    cur = await conn.execute("SELECT lora_id, sample_id, blob_key FROM reference_images ORDER BY 1, 2")
    return [(int(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]


async def reference_count(conn: Connection) -> int:
    """How many references an activation embeds."""
    cur = await conn.execute("SELECT count(*) FROM reference_images")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def summarised_loras(conn: Connection) -> list[int]:
    """Every LoRA with references: their style summaries follow the embeddings."""
    cur = await conn.execute("SELECT DISTINCT lora_id FROM reference_images ORDER BY 1")
    return [int(r[0]) for r in await cur.fetchall()]


async def registrations_since_adapt(conn: Connection) -> int:
    """LoRAs registered (jobs that succeeded) since the last activation or adaptation run."""
    cur = await conn.execute(
        """
        SELECT count(*) FROM registration_jobs
        WHERE state = 'succeeded' AND finished_at > greatest(
            (SELECT max(activated_at) FROM style_encoders),
            (SELECT value::timestamptz FROM catalog_meta WHERE key = %s),
            '-infinity'::timestamptz)
        """,
        (ADAPT_RUN_KEY,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def record_adapt_run(conn: Connection) -> None:
    await conn.execute(
        "INSERT INTO catalog_meta (key, value) VALUES (%s, now()::text)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (ADAPT_RUN_KEY,),
    )


async def claim_label(conn: Connection, label: str) -> None:
    """An empty catalog takes `label` as its encoder; a catalog that has one keeps it."""
    await conn.execute(
        "INSERT INTO catalog_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (ENCODER_KEY, label),
    )


async def pause_automatic_adaptation(conn: Connection, why: str) -> None:
    await conn.execute(
        "INSERT INTO catalog_meta (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (ADAPT_PAUSE_KEY, why),
    )


async def automatic_adaptation_pause(conn: Connection) -> str | None:
    """Why automatic adaptation is paused, or None when it is not."""
    cur = await conn.execute("SELECT value FROM catalog_meta WHERE key = %s", (ADAPT_PAUSE_KEY,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def resume_automatic_adaptation(conn: Connection) -> None:
    await conn.execute("DELETE FROM catalog_meta WHERE key = %s", (ADAPT_PAUSE_KEY,))
