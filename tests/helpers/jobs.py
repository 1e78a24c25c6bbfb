"""Registration jobs moved along by the test, as a worker would: bot tests run the real service
(RegisterLora queues a real job, WatchJob polls its row) but no worker, so a job stays queued
until the test writes its steps into registration_jobs. The bot sees each change through WatchJob.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from db import registration
from db.database import Database
from db.registration import JobRow

# Services of bot tests poll a watched job this often (the default, 0.5 s, only slows tests).
WATCH_POLL_S = 0.05
# bot.core.jobs.follow_job shows at most one update per 1.5 s (the final state always): a step
# written sooner after the last one shown is passed over, so a test waits this long first.
BOT_UPDATE_INTERVAL_S = 1.6
LOOKALIKE = {"slug": "style-02", "distance": 0.05, "threshold": 0.2}


@asynccontextmanager
async def in_background(work: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """A command that follows its job to the end, run while the test moves the job along; cancelled
    if the test fails before it ends."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True)
class JobDriver:
    """Writes what a registration worker writes; reads the rows RegisterLora created."""

    db: Database

    async def job_for(self, source_url: str, timeout_s: float = 15.0) -> JobRow:
        """The job the service queued for `source_url` (the bot's RegisterLora call), once it is there."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.db.connection() as conn:
                query = "SELECT id FROM registration_jobs WHERE source_url = %s"
                cur = await conn.execute(query, (source_url,))
                row = await cur.fetchone()
                job = None if row is None else await registration.get_job(conn, row[0])
            if job is not None:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"the service queued no registration of {source_url}")
            await asyncio.sleep(0.02)

    async def reload(self, job: JobRow) -> JobRow:
        found = await self.db.run(registration.get_job, job.id)
        assert found is not None
        return found

    async def run(self, job: JobRow, step: str, progress: float, message: str = "") -> None:
        """The worker takes the job and reports a step (the same queries a worker makes)."""
        async with self.db.connection() as conn:
            await registration.start_attempt(conn, job.id)
            await registration.report(conn, job.id, step, progress, message)

    async def succeed(self, job: JobRow, lookalikes: Sequence[dict[str, Any]] = ()) -> None:
        """The job's end as registration.complete writes it (the LoRA itself is not inserted)."""
        message = f"registered {job.slug}: 4 references (0 dropped by cleansing), 8 spec images"
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE registration_jobs SET state = 'succeeded', step = 'index', progress = 1,"
                " message = %s, lookalikes = %s, fetch_url = NULL, updated_at = now(),"
                " finished_at = now() WHERE id = %s",
                (message, json.dumps(list(lookalikes)), job.id),
            )

    async def fail(self, job: JobRow, message: str) -> None:
        await self.db.run(registration.fail, job.id, message)

    async def end_unfinished(self) -> None:
        """Fail what a test left running, so the bots' WatchJob streams end (a failed test's app
        would otherwise wait for them at shutdown)."""
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE registration_jobs SET state = 'failed', message = 'the test ended first',"
                " finished_at = now() WHERE state IN ('queued', 'running')"
            )


def assert_progress_shown(shown: Sequence[str]) -> None:
    """The three states a bot shows for a job run queued -> fetch -> succeeded with LOOKALIKE."""
    first, running, final = shown
    assert first == "⏳ Registration queued · 0%\nqueued"
    assert running == "⚙️ Registration running · step fetch · 10%\ndownloaded 3 MiB"
    assert final.startswith("✅ Registration succeeded · step index · 100%\nregistered a: ")
    assert "\nRegistered as `a`." in final
    assert "\n⚠️ Looks like `style-02` (centroid distance 0.050 < 0.200)" in final
