"""Moderation: LoRA status changes, flags of look-alikes with their evidence, the audit log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from psycopg.rows import dict_row

from db.database import Connection
from db.ranking import d_avg_sql, vectors
from db.rows import AuditEntry, FlagEvidenceRow, FlagRow

_FLAG_SELECT = (
    "SELECT f.id, f.lora_id, l.slug, l.name AS lora_name, f.reporter, f.note, f.evidence, f.status,"
    " coalesce(f.reviewer, '') AS reviewer, f.created_at, f.decided_at, l.nsfw"
    " FROM flags f JOIN loras l ON l.id = f.lora_id"
)


def _flag(row: dict[str, Any]) -> FlagRow:
    return FlagRow(**{k: row[k] for k in FlagRow.__dataclass_fields__})


async def audit(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    *,
    client: str | None = None,
) -> None:
    """One audit_log row, written in the caller's transaction so it commits with the decision.
    `actor` is who the caller says acted (a bot's moderator id); `client` is the authenticated
    client that made the call (None: an operator command on the database itself)."""
    await conn.execute(
        "INSERT INTO audit_log (actor, client, action, subject, details) VALUES (%s, %s, %s, %s, %s)",
        (actor, client, action, subject, json.dumps(details)),
    )


async def audit_entries(conn: Connection, subject: str | None = None) -> list[AuditEntry]:
    """Oldest first."""
    cur = await conn.execute(
        "SELECT actor, action, subject, details, client FROM audit_log"
        " WHERE (%(s)s::text IS NULL OR subject = %(s)s) ORDER BY id",
        {"s": subject},
    )
    return [AuditEntry(str(r[0]), str(r[1]), str(r[2]), dict(r[3]), r[4]) for r in await cur.fetchall()]


class FlagAlreadyOpen(Exception):
    def __init__(self, flag_id: uuid.UUID) -> None:
        super().__init__(f"flag {flag_id} is open")
        self.flag_id = flag_id


class OwnFlag(Exception):
    """An approval by the person who filed the flag: it would let anyone with the moderate role
    take a LoRA down alone (a direct takedown needs admin)."""

    def __init__(self, reporter: str) -> None:
        super().__init__(f"{reporter} filed this flag")
        self.reporter = reporter


class TakedownIsFinal(Exception):
    def __init__(self, slug: str) -> None:
        super().__init__(f"{slug} was taken down; a takedown cannot be undone")
        self.slug = slug


async def set_lora_status(
    conn: Connection,
    lora_id: int,
    status: str,
    *,
    actor: str,
    action: str,
    details: dict[str, Any],
    client: str | None = None,
) -> str:
    """Change a LoRA's status and audit it in one transaction; returns the previous status.
    TakedownIsFinal when the locked row is taken down and `status` is not: the check belongs
    here, on the locked row, or a takedown committed after the caller looked could be undone."""
    async with conn.transaction():
        # NO KEY UPDATE: serialises status changes without blocking the key-share lock an
        # activation's summary insert takes on the row (it holds the generation lock meanwhile,
        # which this transaction's summary sync waits for: FOR UPDATE made that a deadlock)
        cur = await conn.execute("SELECT status, slug FROM loras WHERE id = %s FOR NO KEY UPDATE", (lora_id,))
        row = await cur.fetchone()
        if row is None:
            raise LookupError(f"no LoRA with id {lora_id}")
        previous, slug = str(row[0]), str(row[1])
        if previous == "taken_down" and status != "taken_down":
            raise TakedownIsFinal(slug)
        if previous != status:
            await conn.execute(
                "UPDATE loras SET status = %s, updated_at = now() WHERE id = %s", (status, lora_id)
            )
            await audit(conn, actor, action, slug, {**details, "from": previous, "to": status}, client=client)
        return previous


async def evidence_for(
    conn: Connection, queries: Sequence[np.ndarray], lora_id: int
) -> FlagEvidenceRow | None:
    """d_avg of the queries to one LoRA and its rank among every active LoRA (plus itself);
    None when the LoRA has no kept references to compare with."""
    cur = await conn.execute(
        f"""
        WITH d AS ({d_avg_sql("(l.status = 'active' OR l.id = %(id)s)", images=len(queries))}),
        target AS (SELECT d FROM d WHERE lora_id = %(id)s)
        SELECT target.d, (SELECT count(*) FROM d WHERE d.d < target.d) + 1, (SELECT count(*) FROM d)
        FROM target
        """,
        {"q": vectors(queries), "id": lora_id},
    )
    row = await cur.fetchone()
    return None if row is None else FlagEvidenceRow(float(row[0]), int(row[1]), int(row[2]))


class LoraNotFlaggable(Exception):
    """The LoRA is no longer active (taken down or hidden while the artwork was compared)."""


async def insert_flag(
    conn: Connection,
    *,
    lora_id: int,
    reporter: str,
    note: str,
    evidence: dict[str, Any],
    client: str | None = None,
) -> FlagRow:
    """A new open flag; FlagAlreadyOpen when this reporter has one open on this LoRA (two images
    sent at once in a chat filed two, each with its own review card). The LoRA's row lock makes
    the check and the insert one step for concurrent reports."""
    flag_id = uuid.uuid4()
    async with conn.transaction():
        cur = await conn.execute("SELECT status, slug FROM loras WHERE id = %s FOR NO KEY UPDATE", (lora_id,))
        locked = await cur.fetchone()
        if locked is None or str(locked[0]) != "active":  # taken down or hidden since it was looked up
            raise LoraNotFlaggable(lora_id)
        cur = await conn.execute(
            "SELECT id FROM flags WHERE lora_id = %s AND reporter = %s AND status = 'open'",
            (lora_id, reporter),
        )
        if (open_flag := await cur.fetchone()) is not None:
            raise FlagAlreadyOpen(uuid.UUID(str(open_flag[0])))
        cur = await conn.execute(
            "INSERT INTO flags (id, lora_id, reporter, note, evidence) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING (SELECT slug FROM loras WHERE id = %s)",
            (flag_id, lora_id, reporter, note, json.dumps(evidence), lora_id),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit(conn, reporter, "flag_lookalike", str(row[0]), {"flag_id": str(flag_id)}, client=client)
        flag = await get_flag(conn, flag_id)
        assert flag is not None
        return flag


async def get_flag(conn: Connection, flag_id: uuid.UUID) -> FlagRow | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_FLAG_SELECT + " WHERE f.id = %s", (flag_id,))
    row = await cur.fetchone()
    return None if row is None else _flag(row)


async def list_flags(conn: Connection, status: str | None, limit: int) -> list[FlagRow]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        _FLAG_SELECT
        + " WHERE (%(s)s::text IS NULL OR f.status = %(s)s) ORDER BY f.created_at DESC, f.id LIMIT %(n)s",
        {"s": status, "n": limit},
    )
    return [_flag(row) for row in await cur.fetchall()]


async def decide_flag(
    conn: Connection,
    flag_id: uuid.UUID,
    *,
    status: str,
    moderator: str,
    reason: str,
    client: str | None = None,
) -> tuple[FlagRow | None, bool]:
    """Decide an open flag (approve also takes its LoRA down), audited, atomically.
    Returns (flag, decided_now): decided_now is False when the flag was no longer open.
    OwnFlag when its reporter would approve it (dismissing it, a withdrawal, is allowed)."""
    async with conn.transaction():
        if status == "approved":
            cur = await conn.execute(
                "SELECT reporter FROM flags WHERE id = %s AND status = 'open' FOR UPDATE", (flag_id,)
            )
            open_flag = await cur.fetchone()
            if open_flag is not None and str(open_flag[0]) == moderator:
                raise OwnFlag(moderator)
        cur = await conn.execute(
            "UPDATE flags SET status = %s, reviewer = %s, decided_at = now()"
            " WHERE id = %s AND status = 'open' RETURNING lora_id",
            (status, moderator, flag_id),
        )
        row = await cur.fetchone()
        if row is None:
            return await get_flag(conn, flag_id), False
        lora_id = int(row[0])
        details = {"flag_id": str(flag_id), "reason": reason}
        cur = await conn.execute("SELECT status, slug FROM loras WHERE id = %s FOR NO KEY UPDATE", (lora_id,))
        lora_row = await cur.fetchone()
        assert lora_row is not None
        previous, slug = str(lora_row[0]), str(lora_row[1])
        if status == "approved" and previous != "taken_down":
            await conn.execute(
                "UPDATE loras SET status = 'taken_down', updated_at = now() WHERE id = %s", (lora_id,)
            )
            # The same row as a direct takedown: whoever follows lora_taken_down sees this one too.
            takedown = {**details, "from": previous, "to": "taken_down"}
            await audit(conn, moderator, "lora_taken_down", slug, takedown, client=client)
        await audit(conn, moderator, f"flag_{status}", slug, details, client=client)
        return await get_flag(conn, flag_id), True
