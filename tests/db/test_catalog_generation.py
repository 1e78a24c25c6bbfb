"""Migration 010: every summary write draws a generation in commit order, deletions leave tombstones."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
import pytest
from psycopg import errors

from db import summaries
from db.catalog import copy_references, insert_lora, refresh_style_summary
from db.database import Database
from db.moderation import set_lora_status
from db.rows import NewLora, ReferenceRow

pytestmark = pytest.mark.db
DIM = 128


async def add_summary(db: Database, slug: str, seed: int) -> int:
    async with db.transaction() as conn:
        lora_id = await insert_lora(conn, NewLora(slug=slug, name=slug, base_model="sd1"))
        centroid = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        await conn.execute(
            "INSERT INTO lora_style_summary (lora_id, centroid, mean_radius, mean_sq_radius, n_refs)"
            " VALUES (%s, %s, 0.1, 0.01, 3)",
            (lora_id, centroid),
        )
    return lora_id


async def generation_of(db: Database, lora_id: int) -> int:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT generation FROM lora_style_summary WHERE lora_id = %s", (lora_id,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_writes_draw_increasing_generations_and_deletions_leave_tombstones(db: Database) -> None:
    first = await add_summary(db, "first", 1)
    second = await add_summary(db, "second", 2)
    g1, g2 = await generation_of(db, first), await generation_of(db, second)
    assert 0 < g1 < g2
    async with db.connection() as conn:
        assert await summaries.catalog_generation(conn) == g2

    # A takedown reaches the summary through loras_sync_style_summary: a change like any other.
    async with db.transaction() as conn:
        await conn.execute("UPDATE loras SET status = 'taken_down' WHERE id = %s", (first,))
    g3 = await generation_of(db, first)
    assert g3 > g2
    async with db.connection() as conn:
        changes = await summaries.summary_changes(conn, g2, dim=DIM, limit=10)
    assert changes is not None
    assert changes.changed.lora_ids.tolist() == [first]
    assert changes.changed.searchable.tolist() == [False]
    assert changes.changed.generation.tolist() == [g3]

    # Deleting the LoRA cascades to its summary: a tombstone numbered after everything before.
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM loras WHERE id = %s", (second,))
    async with db.connection() as conn:
        generation = await summaries.catalog_generation(conn)
        changes = await summaries.summary_changes(conn, g3, dim=DIM, limit=10)
        assert await summaries.summary_changes(conn, 0, dim=DIM, limit=1) is None  # over the limit
    assert generation > g3
    assert changes is not None
    assert len(changes.changed) == 0
    assert changes.removed.tolist() == [[second, generation]]
    assert changes.truncated == 0

    # TRUNCATE removes every row at once: one tombstone without a LoRA.
    async with db.transaction() as conn:
        await conn.execute("TRUNCATE lora_style_summary")
    async with db.connection() as conn:
        changes = await summaries.summary_changes(conn, generation, dim=DIM, limit=10)
        after = await summaries.catalog_generation(conn)
    assert changes is not None
    assert changes.truncated == after > generation


async def test_writers_serialise_so_generation_order_is_commit_order(db: Database, db_url: str) -> None:
    """A writer holds the generation lock until it commits: a second writer waits, then draws a
    larger number, so a reader that saw the first commit's number never misses the second's."""
    first = await add_summary(db, "first", 1)
    second = await add_summary(db, "second", 2)
    touch = "UPDATE lora_style_summary SET mean_radius = mean_radius + 0.1 WHERE lora_id = %s"
    async with await psycopg.AsyncConnection.connect(db_url) as holder:
        await holder.execute(touch, (first,))
        # Another writer, on another row, cannot draw a number while the first is open.
        async with await psycopg.AsyncConnection.connect(db_url) as blocked:
            await blocked.execute("SET lock_timeout = '200ms'")
            with pytest.raises(errors.LockNotAvailable):
                await blocked.execute(touch, (second,))
        async with await psycopg.AsyncConnection.connect(db_url) as waiting:
            write = asyncio.create_task(waiting.execute(touch, (second,)))
            await asyncio.sleep(0.3)
            assert not write.done()  # waiting for the lock, not for a row
            await holder.commit()
            await write
            await waiting.commit()
    assert await generation_of(db, first) < await generation_of(db, second)


async def wait_for_lock_wait(db_url: str, pid: int) -> None:
    """Until backend `pid` waits for a lock: sequencing by the server's state, not by sleeps."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as watcher:
        for _ in range(200):
            cur = await watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = await cur.fetchone()
            if row is not None and row[0] == "Lock":
                return
            await asyncio.sleep(0.025)
    raise AssertionError(f"backend {pid} never waited for a lock")


async def test_a_takedown_during_an_activation_neither_deadlocks_nor_stays_searchable(
    db: Database, db_url: str
) -> None:
    """An activation holds the generation lock while it replaces every summary. A takedown in
    that window waits for it in its summary sync, holding the LoRA's row; the activation's new
    summary of that LoRA then key-share locks the row for its foreign key. The takedown's row
    lock must not block that (FOR UPDATE did: a deadlock, the takedown rolled back), and its
    sync must see the replaced summary once it has the lock (it updated the vanished old row)."""
    other = await add_summary(db, "other", 1)
    target = await add_summary(db, "target", 2)
    async with await psycopg.AsyncConnection.connect(db_url) as activation:
        await activation.execute("DELETE FROM lora_style_summary WHERE lora_id = %s", (other,))  # the lock
        async with await psycopg.AsyncConnection.connect(db_url) as moderator:
            pid = moderator.info.backend_pid
            takedown = asyncio.create_task(
                set_lora_status(
                    moderator, target, "taken_down", actor="mod", action="lora_taken_down", details={}
                )
            )
            await wait_for_lock_wait(db_url, pid)
            await activation.execute(
                "CREATE TEMP TABLE old AS SELECT * FROM lora_style_summary WHERE lora_id = %s", (target,)
            )
            await activation.execute("DELETE FROM lora_style_summary WHERE lora_id = %s", (target,))
            await activation.execute(
                "INSERT INTO lora_style_summary (lora_id, centroid, mean_radius, mean_sq_radius, n_refs)"
                " SELECT lora_id, centroid, 0.2, 0.04, 3 FROM old"
            )
            await activation.commit()
            assert await asyncio.wait_for(takedown, 10) == "active"
            await moderator.commit()
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT l.status, s.searchable FROM loras l JOIN lora_style_summary s ON s.lora_id = l.id"
            " WHERE l.id = %s",
            (target,),
        )
        assert await cur.fetchone() == ("taken_down", False)


async def test_refreshing_a_summary_updates_it_in_place_and_leaves_no_tombstone(db: Database) -> None:
    """Re-imports and activations refresh every summary: each refresh used to delete the row and
    insert it again, adding a tombstone that nothing ever removes."""
    rng = np.random.default_rng(3)
    refs = [
        ReferenceRow(f"s{i}", f"b{i}", f"t{i}", "", rng.standard_normal(DIM).astype(np.float32), True, 0.1)
        for i in range(3)
    ]

    async def tombstones() -> int:
        async with db.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM lora_style_summary_removed")
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async with db.transaction() as conn:
        for ref in refs:
            await conn.execute(
                "INSERT INTO samples (id, blob_key, sha256) VALUES (%s, %s, '')",
                (ref.sample_id, ref.blob_key),
            )
        lora_id = await insert_lora(conn, NewLora(slug="refreshed", name="r", base_model="sd1"))
        await copy_references(conn, lora_id, refs)
        await refresh_style_summary(conn, lora_id)
    generations = [await generation_of(db, lora_id)]
    for _ in range(3):
        async with db.transaction() as conn:
            await refresh_style_summary(conn, lora_id)
        generations.append(await generation_of(db, lora_id))
    assert generations == sorted(set(generations))  # each refresh is a change readers see
    assert await tombstones() == 0
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT centroid, n_refs FROM lora_style_summary WHERE lora_id = %s", (lora_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    assert row[1] == 3
    expected = np.mean([r.embedding.astype(np.float16).astype(np.float32) for r in refs], axis=0)
    np.testing.assert_allclose(row[0].to_numpy(), expected, atol=1e-5)

    # No kept reference left: the summary goes, and its deletion is the one tombstone.
    async with db.transaction() as conn:
        await conn.execute("UPDATE reference_images SET kept = false WHERE lora_id = %s", (lora_id,))
        await refresh_style_summary(conn, lora_id)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM lora_style_summary WHERE lora_id = %s", (lora_id,))
        assert await cur.fetchone() == (0,)
    assert await tombstones() == 1
