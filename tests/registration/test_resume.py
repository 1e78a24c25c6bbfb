"""A worker killed in the middle of a job: the next worker resumes it, without redoing or duplicating.

Deterministic without test hooks in the service: the test holds an uncommitted artifact row for the
third sample, so the worker blocks on its insert exactly there (two transfers committed), and is
killed with SIGKILL while waiting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.registration.fetch import stage_local_file
from inference_service.registration.jobs import Registration, Registrations, make_queue_app
from inference_service.registration.pipeline import STAGED_PREFIX
from inference_service.runtime import open_runtime
from tests.helpers.catalogs import write_catalog
from tests.helpers.tiny_sd import TinyModels

pytestmark = pytest.mark.db


def worker_env(settings: Settings, tiny: TinyModels) -> dict[str, str]:
    return {
        **os.environ,
        "FINDLORA_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": str(settings.database_url),
        "FINDLORA_TORCH_THREADS": "1",
        "FINDLORA_SD1_BASE_MODEL": str(tiny.base),
        "FINDLORA_SD1_CONTROLNET": str(tiny.controlnet),
        "FINDLORA_REFERENCE_PX": "64",
        "FINDLORA_REFERENCE_STEPS": "2",
        "FINDLORA_SPEC_STEPS": "2",
        "FINDLORA_WORKER_HEARTBEAT_SECONDS": "0.5",
        "FINDLORA_WORKER_STALLED_AFTER_SECONDS": "2",
        "HF_HUB_OFFLINE": "1",
    }


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "findlora",
        "serve",
        "worker",
        env=env,
        stdout=log.open("ab"),
        stderr=asyncio.subprocess.STDOUT,
    )


def query(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_killed_worker_is_resumed_by_the_next(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels, tiny_lora: Path
) -> None:
    url = str(settings.database_url)
    catalog = write_catalog(tmp_path / "catalog", n_loras=4, n_samples=4)
    runtime = await open_runtime(settings)
    queue = make_queue_app(runtime.url)
    try:
        await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
        staged = stage_local_file(tiny_lora, settings.lora_dir, settings.registration_max_bytes)
        async with queue.open_async():
            registrations = Registrations(runtime.db, queue, settings)
            job_id = await registrations.submit(
                Registration(STAGED_PREFIX + staged.sha256, name="Inkwash", base_model="sd1"), staged=True
            )
    finally:
        await runtime.close()

    env = worker_env(settings, tiny_models)
    log = tmp_path / "worker.log"
    blocker = psycopg.connect(url)  # holds the third transfer's row, uncommitted
    blocker.execute(
        "INSERT INTO registration_artifacts (job_id, kind, item, blob_key)"
        " VALUES (%s, 'reference', 's02', 'x')",
        (job_id,),
    )
    first = await start_worker(env, log)
    try:
        await wait_for(
            lambda: (
                query(url, "SELECT count(*) FROM registration_artifacts WHERE job_id = %s", job_id)[0][0] == 2
                and query(url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0]
                >= 1
            ),
            120,
            "the first worker to block on the third transfer",
        )
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
        blocker.rollback()
        blocker.close()
    made_before = dict(
        query(url, "SELECT item, created_at FROM registration_artifacts WHERE job_id = %s", job_id)
    )
    assert sorted(made_before) == ["s00", "s01"]
    assert query(url, "SELECT state, attempts FROM registration_jobs WHERE id = %s", job_id) == [
        ("running", 1)
    ]
    assert query(url, "SELECT count(*) FROM loras WHERE slug = 'inkwash'") == [(0,)]  # nothing half-visible

    second = await start_worker(env, log)
    try:
        await wait_for(
            lambda: (
                query(url, "SELECT state FROM registration_jobs WHERE id = %s", job_id)[0][0]
                in ("succeeded", "failed")
            ),
            120,
            "the second worker to finish the job",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(second.wait(), 30)
        except TimeoutError:
            second.kill()
    state, attempts, message = query(
        url, "SELECT state, attempts, message FROM registration_jobs WHERE id = %s", job_id
    )[0]
    assert state == "succeeded", f"{message}\n{log.read_text()[-3000:]}"
    assert attempts == 2
    after = dict(query(url, "SELECT item, created_at FROM registration_artifacts WHERE job_id = %s", job_id))
    assert sorted(after) == ["s00", "s01", "s02", "s03"]
    assert {k: after[k] for k in made_before} == made_before  # the two finished transfers were reused
    assert query(url, "SELECT count(*) FROM loras WHERE slug = 'inkwash'") == [(1,)]
    assert query(
        url,
        "SELECT count(*) FROM reference_images r JOIN loras l ON l.id = r.lora_id WHERE l.slug = 'inkwash'",
    ) == [(4,)]
    assert query(url, "SELECT status FROM procrastinate_jobs WHERE args->>'job_id' = %s", str(job_id)) == [
        ("succeeded",)
    ]
    assert isinstance(job_id, uuid.UUID)
