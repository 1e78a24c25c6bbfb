"""A registration whose queue job is over without the pipeline having finished it (the job failed
before the pipeline could record why, or an operator deleted it) is failed by the worker's
watcher, which would otherwise leave its source busy and its watchers waiting for good."""

from __future__ import annotations

import uuid

import pytest
from procrastinate.jobs import Status

from db import registration
from db.database import Database
from inference_service.config import Settings
from inference_service.registration.jobs import QUEUE, TASK, fail_orphaned_registrations, make_queue_app

pytestmark = pytest.mark.db


async def record(
    db: Database, queue_job_id: int | None, *, job_id: uuid.UUID | None = None, age_s: float = 0
) -> uuid.UUID:
    job_id = job_id or uuid.uuid4()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO registration_jobs (id, source_url, metadata, slug, state, queue_job_id, created_at)"
            " VALUES (%s, %s, '{}', %s, 'queued', %s, now() - make_interval(secs => %s))",
            (
                job_id,
                f"https://example.org/{job_id}.safetensors",
                f"lora-{job_id.hex[:8]}",
                queue_job_id,
                age_s,
            ),
        )
    return job_id


async def state_of(db: Database, job_id: uuid.UUID) -> str:
    job = await db.run(registration.get_job, job_id)
    assert job is not None
    return job.state


async def test_registrations_whose_queue_job_is_over_or_gone_are_failed(
    settings: Settings, db: Database
) -> None:
    queue = make_queue_app(str(settings.database_url))
    async with queue.open_async():
        task = queue.configure_task(TASK, queue=QUEUE)
        running_id, failed_id = await task.defer_async(job_id="a"), await task.defer_async(job_id="b")
        waiting = await record(db, await task.defer_async(job_id="c"))  # stays `todo`
        worker = await queue.job_manager.register_worker()
        taken = await queue.job_manager.fetch_job([QUEUE], worker)
        assert taken is not None
        assert taken.id == running_id
        running = await record(db, running_id)
        dead = await queue.job_manager.fetch_job([QUEUE], worker)
        assert dead is not None
        assert dead.id == failed_id
        await queue.job_manager.finish_job(dead, status=Status.FAILED, delete_job=False)
        failed = await record(db, failed_id)
        gone = await record(db, 10**12)  # no such queue job (deleted by hand)
        # Created, queue job not deferred yet (or deferred and its id not stored yet): given time.
        just_created = await record(db, None)
        locked = uuid.uuid4()  # deferred with its lock, id not stored: found by the lock
        await queue.configure_task(TASK, queue=QUEUE, lock=str(locked)).defer_async(job_id="d")
        await record(db, None, job_id=locked, age_s=3600)
        # The process stopped between creating the record and queueing its job.
        never_queued = await record(db, None, age_s=3600)

        await fail_orphaned_registrations(db)

    assert [await state_of(db, j) for j in (failed, gone, never_queued)] == ["failed"] * 3
    job = await db.run(registration.get_job, gone)
    assert job is not None
    assert "register the LoRA again" in job.message
    assert [await state_of(db, j) for j in (waiting, running, just_created, locked)] == ["queued"] * 4
