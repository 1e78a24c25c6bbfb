"""`findlora lora register-many` as an operator runs it (subprocesses), with a real worker process
registering tiny LoRAs: everything indexed once, a rerun queues nothing, an interrupted run resumes,
bad entries named by line with the reason."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from tests.helpers.catalogs import write_catalog
from tests.helpers.tiny_sd import TinyModels, build_tiny_loras
from tests.registration.test_resume import query, start_worker, wait_for, worker_env

pytestmark = pytest.mark.db
CATALOG_LORAS = 4


async def import_small_catalog(settings: Settings, tmp_path: Path) -> None:
    runtime = await open_runtime(settings)
    try:
        catalog = write_catalog(tmp_path / "catalog", CATALOG_LORAS, 3)
        await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
    finally:
        await runtime.close()


async def start_register_many(
    list_file: Path, summary: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "findlora", "lora", "register-many", str(list_file), "--json", str(summary),
        "--base-model", "SD 1.5", env={**env, "COLUMNS": "200", "FINDLORA_WATCH_POLL_SECONDS": "0.2"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )  # fmt: skip


def _ctrl_c_as_in_a_terminal() -> None:
    """A test run started in the background (`make test &`, CI runners) ignores SIGINT, and a child
    inherits that: Python then never turns Ctrl-C into KeyboardInterrupt. Restore the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def register_many(
    list_file: Path, env: dict[str, str], timeout: float = 600
) -> tuple[int, str, dict[str, Any]]:
    summary = list_file.with_suffix(".summary.json")
    summary.unlink(missing_ok=True)
    process = await start_register_many(list_file, summary, env)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    assert summary.is_file(), out.decode()
    return process.returncode, out.decode(), json.loads(summary.read_text())


@asynccontextmanager
async def worker(env: dict[str, str], log: Path) -> AsyncIterator[None]:
    process = await start_worker(env, log)
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()


def registered(url: str) -> dict[str, str]:
    """Slug -> sha256 of the LoRAs registered (not imported with the catalog)."""
    rows = query(url, "SELECT slug, sha256 FROM loras WHERE created_by = 'operator'")
    return {str(slug): str(sha) for slug, sha in rows}


def job_count(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM registration_jobs")[0][0])  # type: ignore[call-overload]


async def check_all_registered(url: str, slugs: list[str], lora_files: list[Path]) -> None:
    import hashlib

    found = registered(url)
    assert sorted(found) == sorted(slugs)
    assert sorted(found.values()) == sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in lora_files)
    indexed = query(
        url,
        "SELECT l.slug, count(r.*) FROM loras l JOIN reference_images r ON r.lora_id = l.id"
        " WHERE l.created_by = 'operator' GROUP BY l.slug",
    )
    assert {str(slug) for slug, count in indexed if int(count) > 0} == set(slugs)  # type: ignore[call-overload]


async def test_register_many_from_toml_with_bad_entries_then_rerun_queues_none(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels
) -> None:
    url = str(settings.database_url)
    await import_small_catalog(settings, tmp_path)
    loras = build_tiny_loras(tiny_models, tmp_path / "loras", 5)
    (tmp_path / "loras" / "broken.safetensors").write_bytes(b"not a safetensors file at all")
    tables = [
        f'[[lora]]\npath = "loras/{p.name}"\nname = "Style {i}"\nbase_model = "SD 1.5"\n'
        f'trigger_words = ["style{i}"]\n'
        for i, p in enumerate(loras)
    ]
    bad = [
        '[[lora]]\npath = "loras/missing.safetensors"\nname = "Missing"\n',
        '[[lora]]\nurl = "ftp://example.org/x.safetensors"\nname = "Ftp"\n',
        '[[lora]]\npath = "loras/lora-01.safetensors"\nname = "Typo"\ntrigers = ["x"]\n',
        '[[lora]]\npath = "loras/old.ckpt"\nname = "Pickle"\n',
        '[[lora]]\npath = "loras/broken.safetensors"\nname = "Broken"\n',
    ]
    text = "# spring contest\n" + "\n".join(tables[:2] + bad[:3] + tables[2:] + bad[3:])
    list_file = tmp_path / "spring.toml"
    list_file.write_text(text)
    header_lines = [n for n, line in enumerate(text.splitlines(), start=1) if line == "[[lora]]"]
    slugs = [f"style-{i}" for i in range(5)]

    env = worker_env(settings, tiny_models)
    async with worker(env, tmp_path / "worker.log"):
        code, out, summary = await register_many(list_file, env)
        assert code == 1, out  # bad entries fail the command, the good ones are registered
        assert summary["counts"] == {
            "registered": 5, "already_registered": 0, "already_queued": 0, "queued": 0, "failed": 5,
        }, out  # fmt: skip
        failed = {e["where"]: e["reason"] for e in summary["entries"] if e["status"] == "failed"}
        lines = [f"line {n}" for n in header_lines]
        assert failed == {
            lines[2]: "loras/missing.safetensors: no such file",
            lines[3]: "only https:// download links are accepted, not ftp://",
            lines[4]: "unknown field 'trigers' (known: url, path, name, slug, base_model, trigger_words, "
            "license, author, nsfw, page_url)",
            lines[8]: "old.ckpt is not a .safetensors file",
            lines[9]: failed[lines[9]],
        }
        assert "is text (a web page or an error message?), not a safetensors file" in failed[lines[9]]
        assert f"failed {lines[2]}: loras/missing.safetensors: no such file" in out
        assert "5 registered, 0 skipped" in out
        await check_all_registered(url, slugs, loras)
        words = query(url, "SELECT trigger_words, base_model FROM loras WHERE slug = 'style-3'")
        assert words == [(["style3"], "sd1")]

        jobs = job_count(url)
        code, out, summary = await register_many(list_file, env)
        assert code == 1, out
        assert summary["counts"]["already_registered"] == 5
        assert summary["counts"]["registered"] == summary["counts"]["already_queued"] == 0
        assert job_count(url) == jobs  # nothing queued
        assert "0 registered, 5 skipped (5 already there, 0 already queued), 5 failed" in out
    await check_all_registered(url, slugs, loras)


# The CLI's own insert, waiting on this test's row lock: not any lock waiter on the shared server.
THIRD_INSERT_WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND datname = current_database() AND position('registration_jobs' in query) > 0"
)


async def test_interrupted_register_many_resumes(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels
) -> None:
    """Ctrl-C after two entries are queued (the third is held at its insert by a row this test
    keeps uncommitted); the rerun skips the two queued ones, follows them, queues the rest."""
    url = str(settings.database_url)
    await import_small_catalog(settings, tmp_path)
    loras = build_tiny_loras(tiny_models, tmp_path / "loras", 5)
    list_file = tmp_path / "loras.txt"
    list_file.write_text("".join(f"{p}\n" for p in loras))
    slugs = [p.stem for p in loras]  # the name (and slug) comes from the file name
    env = worker_env(settings, tiny_models)

    blocker = psycopg.connect(url)
    blocker.execute(
        "INSERT INTO registration_jobs (id, source_url, metadata, slug) VALUES (%s, 'held', '{}', %s)",
        (uuid.uuid4(), slugs[2]),
    )
    summary = tmp_path / "first.json"
    first = await start_register_many(list_file, summary, env)
    try:
        await wait_for(
            lambda: job_count(url) == 2 and query(url, THIRD_INSERT_WAITING)[0][0] >= 1,
            120,
            "two entries queued and the third waiting",
        )
        first.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
    finally:
        blocker.rollback()
        blocker.close()
    try:
        out, _ = await asyncio.wait_for(first.communicate(), 120)
    except TimeoutError:
        first.kill()
        out, _ = await first.communicate()
        raise AssertionError(f"register-many did not stop after Ctrl-C:\n{out.decode()}") from None
    assert first.returncode == 130, out.decode()
    assert "run the same command again" in out.decode()
    assert job_count(url) == 2  # the interrupted third insert left nothing behind

    async with worker(env, tmp_path / "worker.log"):
        code, out_text, result = await register_many(list_file, env)
    assert code == 0, out_text
    assert result["counts"] == {
        "registered": 3, "already_registered": 0, "already_queued": 2, "queued": 0, "failed": 0,
    }, out_text  # fmt: skip
    queued = [e["where"] for e in result["entries"] if e["status"] == "already_queued"]
    assert queued == ["line 1", "line 2"]
    await check_all_registered(url, slugs, loras)
    assert job_count(url) == 5  # each entry queued once


async def test_fifty_loras_through_the_worker(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels
) -> None:
    """The issue's size: 50 local files, all indexed; the rerun queues none. Two jobs at a time
    share the worker's pipelines: each LoRA must still generate alone in them."""
    url = str(settings.database_url)
    await import_small_catalog(settings, tmp_path)
    loras = build_tiny_loras(tiny_models, tmp_path / "loras", 50)
    list_file = tmp_path / "fifty.txt"
    list_file.write_text("# fifty tiny LoRAs\n" + "".join(f"loras/{p.name}\n" for p in loras))
    env = {**worker_env(settings, tiny_models), "FINDLORA_WORKER_CONCURRENCY": "2"}
    async with worker(env, tmp_path / "worker.log"):
        code, out, summary = await register_many(list_file, env)
        assert code == 0, out
        assert summary["counts"]["registered"] == 50, out
        await check_all_registered(url, [p.stem for p in loras], loras)
        code, out, summary = await register_many(list_file, env)
    assert code == 0, out
    assert summary["counts"]["already_registered"] == 50
    assert job_count(url) == 50
