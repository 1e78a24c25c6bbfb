"""The chat flow of a list of LoRAs (bot.core.bulk) against a real service and worker, on tiny
models fetched from a loopback https server: queued, followed, summarised; a rerun skips."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bot.core.bulk import register_list
from bot.core.replies import SERVICE_DOWN
from db.clients import Role
from findlora_client import FindLoraClient
from findlora_client.bulk import ALREADY_QUEUED, ALREADY_REGISTERED, FAILED, REGISTERED
from inference_service.config import Settings
from inference_service.registration.jobs import run_worker
from protos import findlora_pb2 as pb
from tests.helpers.https import LocalServer, body, https_server
from tests.helpers.service import served_catalog
from tests.helpers.tiny_sd import TinyModels, build_tiny_loras
from tests.registration.conftest import tiny_models  # noqa: F401  (the session fixture)
from tests.registration.test_jobs import registration_settings, worker_policy
from tests.registration.test_resume import wait_for

pytestmark = pytest.mark.db


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with https_server() as running:
        yield running


def job_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM registration_jobs").fetchone()
        return int(row[0]) if row else 0


async def test_a_list_is_queued_followed_summarised_and_a_rerun_skips(
    settings: Settings,
    tmp_path: Path,
    tiny_models: TinyModels,  # noqa: F811
    server: LocalServer,
) -> None:
    settings = registration_settings(settings, tiny_models, server.port)
    url = str(settings.database_url)
    for path in build_tiny_loras(tiny_models, tmp_path / "loras", 3):
        server.routes[f"/files/{path.name}"] = body(path.read_bytes())
    server.routes["/files/not-a-lora.safetensors"] = body(b"abc")
    links = [server.url(f"/files/lora-{i:02d}.safetensors?sig=secret") for i in range(3)]
    text = (
        "".join(
            f'[[lora]]\nurl = "{link}"\nname = "Wave {i}"\nbase_model = "SD 1.5"\n\n'
            for i, link in enumerate(links)
        )
        + f'[[lora]]\nurl = "{server.url("/files/not-a-lora.safetensors")}"\nname = "Broken"\n'
    )
    shown: list[str] = []

    async def show(message: str) -> None:
        shown.append(message)

    async with (
        served_catalog(settings, tmp_path, n_loras=4, n_samples=3) as served,
        served.client(Role.MODERATE, timeout=30) as client,
    ):
        # The first entry is queued already (a moderator started it by hand).
        await client.register_lora(
            links[0], pb.LoraMetadata(name="Wave 0", base_model="sd1"), requested_by="mod#1"
        )
        flow = asyncio.create_task(register_list(client, "mod#2", text, "waves.toml", show, timeout=30))
        await wait_for(lambda: job_count(url) == 4, 60, "the list's new entries queued")
        await run_worker(settings, wait=False, policy=worker_policy(server))
        summary = await asyncio.wait_for(flow, 120)

        assert [o.status for o in summary.outcomes] == [ALREADY_QUEUED, REGISTERED, REGISTERED, FAILED]
        assert summary.outcomes[3].where == "line 16"
        assert "too short to be a safetensors file" in summary.outcomes[3].reason
        assert shown[-1].startswith(
            "❌ 2 registered, 1 skipped (0 already there, 1 already queued), 1 failed."
        )
        assert "secret" not in "".join(shown)

        # The rerun queues only what failed (the broken file, which fails again).
        flow = asyncio.create_task(register_list(client, "mod#2", text, "waves.toml", show, timeout=30))
        await wait_for(lambda: job_count(url) == 5, 60, "the failed entry queued again")
        await run_worker(settings, wait=False, policy=worker_policy(server))
        again = await asyncio.wait_for(flow, 120)
        assert [o.status for o in again.outcomes] == [ALREADY_REGISTERED] * 3 + [FAILED]
        assert job_count(url) == 5


async def test_an_unreachable_service_is_said_plainly_not_by_its_address() -> None:
    shown: list[str] = []

    async def show(message: str) -> None:
        shown.append(message)

    async with FindLoraClient("127.0.0.1:1", timeout=5) as client:
        text = "https://example.org/ink.safetensors\n"
        summary = await register_list(client, "mod#1", text, "list.txt", show, timeout=5)
    [outcome] = summary.outcomes
    assert (outcome.status, outcome.reason) == (FAILED, SERVICE_DOWN)
    assert "127.0.0.1" not in shown[-1]
    assert SERVICE_DOWN in shown[-1]
