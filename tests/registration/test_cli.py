"""`findlora lora register FILE` as an operator runs it (a subprocess), running the job in-process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from tests.helpers.catalogs import write_catalog
from tests.helpers.tiny_sd import TinyModels
from tests.registration.test_resume import worker_env

pytestmark = pytest.mark.db


async def findlora(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "findlora", *args, env={**env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_register_a_local_file_and_refuse_a_pickle(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels, tiny_lora: Path
) -> None:
    runtime = await open_runtime(settings)
    try:
        await import_catalog(
            write_catalog(tmp_path / "catalog", 4, 3), runtime.db, runtime.blobs, runtime.embedder
        )
    finally:
        await runtime.close()
    env = worker_env(settings, tiny_models)
    code, out = await findlora(
        "lora", "register", str(tiny_lora), "--name", "Ink Wash", "--base-model", "sd1", "--run-here", env=env
    )
    assert code == 0, out
    assert "diffusers LoRA" in out
    assert "registered ink-wash: 3 references" in out

    code, out = await findlora("lora", "register", str(tiny_lora), "--name", "Again", "--run-here", env=env)
    assert code == 1
    assert "already registered as 'ink-wash'" in out

    pickle = tmp_path / "old-style.ckpt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    code, out = await findlora("lora", "register", str(pickle), "--name", "Old", env=env)
    assert code == 1
    assert "Python pickles" in out


async def test_a_failed_jobs_file_leaves_the_lora_store(settings: Settings, tmp_path: Path) -> None:
    """A download is stored before it is validated; refused ones (up to the size cap each) would
    otherwise fill the worker's disk. A file another live job works on, or was staged for, stays."""
    import uuid

    import psycopg

    from inference_service.registration.fetch import stage_local_file
    from inference_service.registration.jobs import Registration, Registrations, make_queue_app
    from inference_service.registration.pipeline import STAGED_PREFIX, RegistrationPipeline

    not_a_lora = Path(__file__).parents[2] / "fuzz" / "corpus" / "lora_header" / "not_a_lora.safetensors"
    url = str(settings.database_url)
    runtime = await open_runtime(settings)
    queue = make_queue_app(runtime.url)
    try:
        never_generates = None  # validation refuses the file before any generator is asked for
        pipeline = RegistrationPipeline(
            settings,
            runtime.db,
            runtime.blobs,
            runtime.encoders,
            never_generates,  # type: ignore[arg-type]
        )
        async with queue.open_async():
            registrations = Registrations(runtime.db, queue, settings)

            async def refused(name: str) -> Path:
                staged = stage_local_file(not_a_lora, settings.lora_dir, settings.registration_max_bytes)
                job_id = await registrations.submit(
                    Registration(STAGED_PREFIX + staged.sha256, name=name, base_model="sd1"), staged=True
                )
                await pipeline.run(job_id)
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT state, message FROM registration_jobs WHERE id = %s", (job_id,)
                    )
                    state, message = row.fetchone() or ("", "")
                assert state == "failed"
                assert "LoRA" in message
                return staged.path

            with psycopg.connect(url) as conn:  # another job, still running, has the same file
                sha = stage_local_file(not_a_lora, settings.lora_dir, settings.registration_max_bytes).sha256
                conn.execute(
                    "INSERT INTO registration_jobs (id, source_url, metadata, slug, state, file_sha256)"
                    " VALUES (%s, 'https://example.org/x.safetensors', '{}', 'other', 'running', %s)",
                    (uuid.uuid4(), sha),
                )
            assert (await refused("One")).exists()
            with psycopg.connect(url) as conn:
                conn.execute(
                    "UPDATE registration_jobs SET state = 'failed', finished_at = now() WHERE slug = 'other'"
                )
            assert not (await refused("Two")).exists()
            with psycopg.connect(url) as conn:  # a staged job no worker has taken: no file_sha256 yet
                conn.execute(
                    "INSERT INTO registration_jobs (id, source_url, metadata, slug, state)"
                    " VALUES (%s, %s, '{}', 'queued-one', 'queued')",
                    (uuid.uuid4(), STAGED_PREFIX + sha),
                )
            from db.registration import file_still_wanted

            assert await runtime.db.run(file_still_wanted, sha, uuid.uuid4())
    finally:
        await runtime.close()


async def test_a_stopped_registration_fails_with_a_reason_and_frees_its_source(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels, tiny_lora: Path
) -> None:
    """Ctrl-C in `lora register --run-here`, or an aborted job: the queue ends its job for good, so
    a row left `running` would refuse every later registration of the same file."""
    import psycopg

    from inference_service.registration.fetch import stage_local_file
    from inference_service.registration.generate import GenerationParams, TransferGenerator
    from inference_service.registration.jobs import Registration, Registrations, make_queue_app
    from inference_service.registration.pipeline import STAGED_PREFIX, RegistrationPipeline

    settings = settings.model_copy(
        update={"sd1_base_model": str(tiny_models.base), "sd1_controlnet": str(tiny_models.controlnet),
                "reference_px": 64, "reference_steps": 2, "spec_steps": 2}
    )  # fmt: skip
    url = str(settings.database_url)
    runtime = await open_runtime(settings)
    queue = make_queue_app(runtime.url)
    try:
        await import_catalog(
            write_catalog(tmp_path / "catalog", 4, 3), runtime.db, runtime.blobs, runtime.embedder
        )
        generator = TransferGenerator.load(GenerationParams.from_settings(settings, "sd1"), device="cpu")
        loaded: list[str] = []  # families the pipeline took the generator for

        def generators(family: str) -> TransferGenerator:
            loaded.append(family)
            return generator

        pipeline = RegistrationPipeline(settings, runtime.db, runtime.blobs, runtime.encoders, generators)
        async with queue.open_async():
            registrations = Registrations(runtime.db, queue, settings)
            staged = stage_local_file(tiny_lora, settings.lora_dir, settings.registration_max_bytes)
            request = Registration(STAGED_PREFIX + staged.sha256, name="Ink", base_model="sd1")
            job_id = await registrations.submit(request, staged=True)
            pipeline.generation_lock.acquire()  # the job stops at generation, where it is stopped
            try:
                task = asyncio.create_task(pipeline.run(job_id))
                for _ in range(600):
                    with psycopg.connect(url) as conn:
                        row = conn.execute("SELECT step FROM registration_jobs WHERE id = %s", (job_id,))
                        if (row.fetchone() or ("",))[0] == "generate":
                            break
                    await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                pipeline.generation_lock.release()
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT state, message FROM registration_jobs WHERE id = %s", (job_id,))
                assert row.fetchone() == (
                    "failed",
                    "the registration was stopped before it finished; register the LoRA again",
                )
            assert not staged.path.exists()  # no later job reuses a failed job's file
            staged = stage_local_file(tiny_lora, settings.lora_dir, settings.registration_max_bytes)
            assert await registrations.submit(request, staged=True)  # the source is free again
            # The stopped job's generation thread, waiting on the pipelines, ends once it has
            # them: it generates nothing for a job that has failed.
            await asyncio.sleep(0.5)
            assert pipeline.generation_lock.acquire(timeout=5)
            pipeline.generation_lock.release()
            assert loaded == []
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM registration_artifacts WHERE job_id = %s", (job_id,))
                assert row.fetchone() == (0,)
    finally:
        await runtime.close()


async def test_run_here_ends_with_the_workers_error_when_the_worker_cannot_start(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels, tiny_lora: Path
) -> None:
    """Before, the command watched its queued job for good: nothing would ever take it."""
    env = {
        **worker_env(settings, tiny_models),
        "FINDLORA_STYLE_ENCODER": str(tmp_path / "missing.safetensors"),
    }
    code, out = await findlora(
        "lora", "register", str(tiny_lora), "--name", "Ink", "--base-model", "sd1", "--run-here", env=env
    )
    assert code == 1, out
    assert "the worker in this process stopped" in out
    assert "missing.safetensors" in out
