"""The worker's adapt_catalog job: queued once N LoRAs were registered since the last adaptation
(one queued at a time), run by the worker, counted from its run."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from procrastinate import App

from db import encoders as db_encoders
from db.database import Database
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.models.style_encoder import save_encoder
from inference_service.registration.jobs import (
    ADAPT_LOCK,
    ADAPT_QUEUE,
    ADAPT_TASK,
    defer_adapt_when_due,
    heartbeat_while_running,
    make_queue_app,
    requeue_stalled,
    run_worker,
)
from inference_service.runtime import open_runtime
from lab.zoo.style_zoo import generate_zoo
from tests.helpers.encoders import tiny_embedder

pytestmark = pytest.mark.db


async def registered(db: Database, count: int) -> None:
    """`count` registration jobs that succeeded now (what the pipeline leaves behind)."""
    async with db.connection() as conn:
        for _ in range(count):
            await conn.execute(
                "INSERT INTO registration_jobs (id, source_url, metadata, slug, state, finished_at)"
                " VALUES (%s, 'staged:x', '{}', %s, 'succeeded', now())",
                (uuid.uuid4(), f"lora-{uuid.uuid4().hex[:8]}"),
            )


def queued(settings: Settings) -> list[str]:
    with psycopg.connect(str(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", (ADAPT_TASK,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def adaptable(settings: Settings, tmp_path: Path, every: int) -> tuple[Settings, Path]:
    """Settings with a tiny configured encoder and adaptation every `every` registrations, and a
    catalog of procedural styles that encoder ranks only part-way right."""
    encoder = tmp_path / "tiny.safetensors"
    save_encoder(tiny_embedder().model, encoder)
    adapted = settings.model_copy(
        update={"adapt_every_registrations": every, "adapt_max_minutes": 0.5, "style_encoder": encoder}
    )
    zoo = generate_zoo(
        tmp_path / "zoo", n_styles=12, n_samples=8, split="train", seed=2, progress=False, size=48
    )
    return adapted, zoo


async def test_adapt_job_is_deferred_after_n_registrations_and_runs_on_the_worker(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    settings, zoo = adaptable(settings, tmp_path, every=2)
    runtime = await open_runtime(settings)
    try:
        await import_catalog(zoo, runtime.db, runtime.blobs, runtime.encoders)
        configured = runtime.embedder.label
    finally:
        await runtime.close()
    queue = make_queue_app(str(settings.database_url))
    async with queue.open_async():
        off = settings.model_copy(update={"adapt_every_registrations": 0})
        await registered(db, 5)
        assert not await defer_adapt_when_due(queue, db, off)  # off by default
        await db.run(db_encoders.record_adapt_run)  # count from here
        await registered(db, 1)
        assert not await defer_adapt_when_due(queue, db, settings)
        await registered(db, 1)
        assert await db.run(db_encoders.registrations_since_adapt) == 2
        assert await defer_adapt_when_due(queue, db, settings)
        await registered(db, 1)
        assert not await defer_adapt_when_due(queue, db, settings)  # one queued at a time
    assert queued(settings) == ["todo"]

    await run_worker(settings, wait=False)
    assert queued(settings) == ["succeeded"]
    # The run is recorded (kept or refused): registrations count from it again.
    assert await db.run(db_encoders.registrations_since_adapt) == 0
    # Adapted on the worker, kept and activated over the configured encoder.
    label = await db.run(db_encoders.active_label)
    assert label is not None
    assert label.startswith("adapted@")
    row = await db.run(db_encoders.get_encoder, label)
    assert row is not None
    assert row.parent == configured
    assert row.metrics["after"] > row.metrics["before"]


def test_a_bad_adapt_schedule_is_refused_with_its_setting_name() -> None:
    from pydantic import ValidationError

    assert Settings(adapt_cron=" 0 3 * * 0 ").adapt_cron == "0 3 * * 0"
    assert Settings().adapt_cron == ""
    assert Settings().adapt_every_registrations == 0  # both off by default
    with pytest.raises(ValidationError, match="FINDLORA_ADAPT_CRON 'every sunday' is not a cron schedule"):
        Settings(adapt_cron="every sunday")
    # Valid syntax naming no date: procrastinate's scheduler died on it and the worker exited 0.
    with pytest.raises(ValidationError, match="FINDLORA_ADAPT_CRON '0 0 30 2 \\*' names no date that exists"):
        Settings(adapt_cron="0 0 30 2 *")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker_heartbeat_seconds": 30, "worker_stalled_after_seconds": 5}, "at least twice"),
        ({"worker_heartbeat_seconds": 0}, "worker_heartbeat_seconds"),
        ({"worker_concurrency": 0}, "worker_concurrency"),
    ],
)
def test_worker_timings_that_would_run_a_job_twice_or_never_are_refused(
    values: dict[str, float], message: str
) -> None:
    """A heartbeat slower than the stall timeout made a second worker run a live worker's job
    beside it; concurrency 0 ran nothing while the worker counted as live."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        Settings(**values)


async def test_a_lost_reference_skips_the_adapt_job_with_what_to_do_and_counts_as_a_run(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    """Before training, not after it: the worker's run names the LoRA, the sample and the file
    (as `catalog adapt` does), is not retried, and registrations do not requeue it at once."""
    from structlog.testing import capture_logs

    from inference_service.registration.jobs import run_adapt_job

    settings = settings.model_copy(update={"adapt_every_registrations": 1, "adapt_max_minutes": 0.5})
    runtime = await open_runtime(settings)
    try:
        zoo = generate_zoo(
            tmp_path / "zoo", n_styles=4, n_samples=4, split="train", seed=2, progress=False, size=48
        )
        await import_catalog(zoo, runtime.db, runtime.blobs, runtime.encoders)
        _lora_id, sample_id, blob_key = (await db.run(db_encoders.reference_keys))[0]
        lost = runtime.blobs.path(blob_key)
        lost.unlink()  # a blob store that lost a reference
        await registered(db, 3)
        with capture_logs() as logs:
            await run_adapt_job(runtime, settings)
    finally:
        await runtime.close()
    assert await db.run(db_encoders.registrations_since_adapt) == 0
    (skipped,) = [entry for entry in logs if entry["event"] == "adaptation_skipped"]
    assert skipped["log_level"] == "warning"
    assert sample_id in skipped["reason"]
    assert str(lost) in skipped["reason"]
    assert not any(entry["event"] == "adaptation_failed" for entry in logs)


async def test_an_adaptation_whose_worker_died_is_requeued_and_frees_its_lock(
    settings: Settings, db: Database
) -> None:
    """A worker killed mid-adaptation leaves its job in `doing`, holding ADAPT_LOCK: unless it is
    put back, no later adaptation ever runs and the triggers find the queueing lock taken."""
    queue = make_queue_app(str(settings.database_url))
    async with queue.open_async():
        await queue.configure_task(
            ADAPT_TASK, queue=ADAPT_QUEUE, lock=ADAPT_LOCK, queueing_lock=ADAPT_LOCK
        ).defer_async()
        worker = await queue.job_manager.register_worker()
        taken = await queue.job_manager.fetch_job([ADAPT_QUEUE], worker)
        assert taken is not None
        assert queued(settings) == ["doing"]
        with psycopg.connect(str(settings.database_url)) as conn:  # the worker stops its heartbeats
            conn.execute(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
                (worker,),
            )
        assert await requeue_stalled(queue, settings) == 1
        assert queued(settings) == ["todo"]
        # The lock is free again: a fresh worker takes the job.
        again = await queue.job_manager.fetch_job([ADAPT_QUEUE], await queue.job_manager.register_worker())
        assert again is not None
        assert again.id == taken.id


async def test_a_rollback_pauses_the_workers_adaptations_until_one_runs_by_hand(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    """Otherwise the next scheduled run would train much the same encoder from the same catalog
    and activate it again, undoing the operator's rollback."""
    from inference_service.catalog.adaptation import AdaptConfig, adapt_catalog, rollback
    from inference_service.registration.jobs import run_adapt_job

    settings, zoo = adaptable(settings, tmp_path, every=1)
    runtime = await open_runtime(settings)
    queue = make_queue_app(str(settings.database_url))
    try:
        await import_catalog(zoo, runtime.db, runtime.blobs, runtime.encoders)
        configured = runtime.embedder.label
        await run_adapt_job(runtime, settings)
        adapted = await db.run(db_encoders.active_label)
        assert adapted is not None
        assert adapted != configured

        await rollback(runtime.db, runtime.blobs, runtime.encoders)
        assert await db.run(db_encoders.active_label) == configured
        why = await db.run(db_encoders.automatic_adaptation_pause)
        assert why is not None
        assert f"rolled back from {adapted} to {configured}" in why
        await registered(db, 3)
        async with queue.open_async():
            assert not await defer_adapt_when_due(queue, db, settings)  # nothing queued while paused
        await run_adapt_job(runtime, settings)  # the cron's run: skipped, the rollback stands
        assert await db.run(db_encoders.active_label) == configured

        # A run by hand is the operator's decision: it lifts the pause, whatever it keeps.
        await adapt_catalog(
            runtime.db, runtime.blobs, runtime.encoders, settings, AdaptConfig(max_minutes=0.5, max_steps=2)
        )
        assert await db.run(db_encoders.automatic_adaptation_pause) is None
        async with queue.open_async():
            await registered(db, 1)
            assert await defer_adapt_when_due(queue, db, settings)
    finally:
        await runtime.close()


async def test_a_dead_adaptation_with_another_one_waiting_is_superseded_not_a_crash(
    settings: Settings, db: Database
) -> None:
    """A second adaptation is queued while the first runs (the queueing lock binds only `todo`
    jobs); when the first one's worker dies, putting it back would break the lock's unique index.
    The waiting one does its work: the dead one is failed and the watcher (and the next worker
    start) go on instead of raising."""
    queue = make_queue_app(str(settings.database_url))
    adapt = queue.configure_task(ADAPT_TASK, queue=ADAPT_QUEUE, lock=ADAPT_LOCK, queueing_lock=ADAPT_LOCK)
    async with queue.open_async():
        await adapt.defer_async()
        worker = await queue.job_manager.register_worker()
        taken = await queue.job_manager.fetch_job([ADAPT_QUEUE], worker)
        assert taken is not None
        await queue.configure_task(
            ADAPT_TASK, queue=ADAPT_QUEUE, lock=ADAPT_LOCK, queueing_lock=ADAPT_LOCK
        ).defer_async()
        assert queued(settings) == ["doing", "todo"]
        with psycopg.connect(str(settings.database_url)) as conn:
            conn.execute(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
                (worker,),
            )
        assert await requeue_stalled(queue, settings) == 0
        assert queued(settings) == ["failed", "todo"]
        assert await requeue_stalled(queue, settings) == 0  # nothing stalled is left


async def running_adapt_job(queue: App) -> tuple[int, int]:
    """(worker id, job id) of an adaptation job a registered worker has taken (now `doing`)."""
    await queue.configure_task(ADAPT_TASK, queue=ADAPT_QUEUE, lock=ADAPT_LOCK).defer_async()
    worker = await queue.job_manager.register_worker()
    taken = await queue.job_manager.fetch_job([ADAPT_QUEUE], worker)
    assert taken is not None
    assert taken.id is not None
    return worker, taken.id


async def test_a_running_job_keeps_its_workers_heartbeat_while_the_worker_stops(
    settings: Settings, db: Database
) -> None:
    """A stopping worker cancels procrastinate's heartbeats, then waits for its running jobs: the
    job's own heartbeat keeps it from looking stalled, so no watcher runs it a second time."""
    queue = make_queue_app(str(settings.database_url))
    async with queue.open_async():
        worker, job_id = await running_adapt_job(queue)
        with psycopg.connect(str(settings.database_url)) as conn:  # procrastinate's beats stopped
            conn.execute(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
                (worker,),
            )
        async with heartbeat_while_running(db, job_id, interval=0.05):
            await asyncio.sleep(0.3)
            assert await requeue_stalled(queue, settings) == 0
        assert queued(settings) == ["doing"]


async def test_the_end_of_a_job_never_waits_on_a_blocked_heartbeat(settings: Settings, db: Database) -> None:
    """A touch stuck behind a lock on the worker's row must not keep the job from ending: the
    beat is stopped, not cancelled mid-query, and each touch has a statement timeout."""
    queue = make_queue_app(str(settings.database_url))
    async with queue.open_async():
        worker, job_id = await running_adapt_job(queue)
        with psycopg.connect(str(settings.database_url)) as holder:  # holds the row, uncommitted
            holder.execute("SELECT 1 FROM procrastinate_workers WHERE id = %s FOR UPDATE", (worker,))
            started = asyncio.get_running_loop().time()

            async def job() -> None:
                async with heartbeat_while_running(db, job_id, interval=0.05):
                    await asyncio.sleep(0.2)  # a touch starts and blocks on the row

            await asyncio.wait_for(job(), timeout=10)
            assert asyncio.get_running_loop().time() - started < 5  # the 1 s statement timeout
