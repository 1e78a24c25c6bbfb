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
