"""A takedown is final even when it commits between a restore's look at the LoRA and its write
(two moderators on two chats at the same moment)."""

from __future__ import annotations

from typing import Any

import pytest

from db import moderation
from db.database import Database
from db.rows import LoraRow
from inference_service.errors import FailedPrecondition
from inference_service.moderation import Moderation

pytestmark = pytest.mark.db


class ApprovedMeanwhile(Moderation):
    """Another moderator approves a lookalike flag (a takedown) right after this one looked."""

    flag_id: Any = None

    async def resolve_lora(self, ref: str) -> LoraRow:
        lora = await super().resolve_lora(ref)
        _, decided = await self.db.run(
            moderation.decide_flag, self.flag_id, status="approved", moderator="slack:T:UA", reason=""
        )
        assert decided
        return lora


async def test_a_restore_cannot_undo_a_takedown_that_landed_while_it_ran(db: Database) -> None:
    async with db.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO loras (slug, name, base_model) VALUES ('x', 'X', 'sdxl') RETURNING id"
        )
        row = await cur.fetchone()
    assert row is not None
    # Flagged while it was listed, hidden since: the restore below races the flag's approval.
    flag = await db.run(moderation.insert_flag, lora_id=row[0], reporter="slack:T:U1", note="", evidence={})
    async with db.connection() as conn:
        await conn.execute("UPDATE loras SET status = 'hidden' WHERE id = %s", (row[0],))
    racing = ApprovedMeanwhile(db, None, None)  # type: ignore[arg-type]  # set_status needs neither
    racing.flag_id = flag.id
    with pytest.raises(FailedPrecondition, match="x was taken down; a takedown cannot be undone"):
        await racing.set_status("x", "active", "discord:42", "restore")
    async with db.connection() as conn:
        cur = await conn.execute("SELECT status FROM loras WHERE id = %s", (row[0],))
        assert await cur.fetchone() == ("taken_down",)
