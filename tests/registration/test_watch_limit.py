"""WatchJob streams last as long as their jobs: a bound keeps followed registrations from taking
every RPC slot the server has, and a closed stream gives its slot back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from db.clients import Role
from findlora_client import ServiceCallError
from inference_service.config import Settings
from protos import findlora_pb2 as pb
from tests.helpers.service import served_catalog

pytestmark = pytest.mark.db


async def test_watch_streams_are_capped_and_a_closed_one_frees_its_slot(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            "max_watch_streams": 1,
            "watch_poll_seconds": 0.05,
            "registration_allowed_hosts": ["example.org"],
        }
    )
    async with (
        served_catalog(settings, tmp_path) as served,
        served.client(Role.MODERATE, timeout=30) as client,
    ):
        metadata = pb.LoraMetadata(name="Inkwash", base_model="sd1")
        job_id = await client.register_lora("https://example.org/a.safetensors", metadata, requested_by="m")
        first = client.watch_job(job_id, timeout=30)
        assert (await anext(first)).job_id == job_id  # queued: no worker runs here, so it stays open

        with pytest.raises(ServiceCallError) as info:
            await anext(client.watch_job(job_id, timeout=30))
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "the job goes on without being watched" in info.value.message
        assert await client.health() == "SERVING"  # other RPCs are unaffected

        await first.aclose()  # the client goes away: the server's stream ends, its slot returns
        for _ in range(100):
            try:
                again = client.watch_job(job_id, timeout=30)
                assert (await anext(again)).job_id == job_id
                await again.aclose()
                break
            except ServiceCallError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the closed stream never gave its slot back")


async def test_a_revoked_clients_open_watch_stream_ends_at_the_next_poll(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    """The token is checked once per call: a stream that follows a slow registration kept
    sending a revoked client the job's progress until the job ended."""
    import psycopg

    settings = settings.model_copy(
        update={"watch_poll_seconds": 0.05, "registration_allowed_hosts": ["example.org"]}
    )
    async with (
        served_catalog(settings, tmp_path) as served,
        served.client(Role.MODERATE, timeout=30) as client,
    ):
        metadata = pb.LoraMetadata(name="Inkwash", base_model="sd1")
        job_id = await client.register_lora("https://example.org/a.safetensors", metadata, requested_by="m")
        stream = client.watch_job(job_id, timeout=30)
        assert (await anext(stream)).job_id == job_id  # queued: no worker here, so it stays open
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("UPDATE clients SET revoked_at = now() WHERE name = 'test-moderate'")
        with pytest.raises(ServiceCallError) as info:
            await asyncio.wait_for(anext(stream), timeout=10)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in info.value.message
