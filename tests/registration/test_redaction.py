"""Signed download links: the token in the query never reaches a stored row, a job message or a log."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from db.clients import Role
from db.migrate import MIGRATIONS_DIR, migrate
from findlora_client import FindLoraClient
from inference_service.config import Settings
from inference_service.registration.fetch import FetchPolicy, is_public_address
from inference_service.registration.jobs import run_worker
from inference_service.server import start_service
from protos import findlora_pb2 as pb
from tests.helpers.https import LocalServer, body, https_server
from tests.helpers.service import issue_token, service_client

pytestmark = pytest.mark.db
LOOPBACK = ipaddress.ip_address("127.0.0.1")
SECRET = "hush-0123456789"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with https_server() as running:
        yield running


async def watch(client: FindLoraClient, job_id: str) -> list[pb.JobEvent]:
    return [event async for event in client.watch_job(job_id, timeout=30)]


def job_rows(url: str) -> dict[str, tuple[str, str | None, str, str]]:
    """slug -> (source_url, fetch_url, state, message)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT slug, source_url, fetch_url, state, message FROM registration_jobs"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def test_signed_url_tokens_stay_out_of_rows_messages_and_logs(
    settings: Settings, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(
        update={
            "registration_allowed_hosts": ["127.0.0.1"],
            "registration_allowed_ports": [server.port],
            "watch_poll_seconds": 0.05,
        }
    )
    server.routes["/files/broken.safetensors"] = body(b"abc")
    policy = FetchPolicy(
        allowed_hosts=("127.0.0.1",),
        allowed_ports=(server.port,),
        address_allowed=lambda a: is_public_address(a) or a == LOOPBACK,
        ssl_context=server.client_context,
    )
    caplog.set_level(logging.DEBUG)
    service = await start_service(settings, "127.0.0.1:0")
    try:
        token = await issue_token(service, Role.MODERATE)
        async with service_client(service, token, timeout=30) as client:
            with capture_logs() as logs:
                jobs = {
                    slug: await client.register_lora(
                        server.url(f"/files/{path}?token={SECRET}&sig={SECRET}#{SECRET}"),
                        pb.LoraMetadata(name=slug),
                        requested_by="mod#1",
                    )
                    for slug, path in (("broken", "broken.safetensors"), ("gone", "gone.safetensors"))
                }
                queued = job_rows(str(settings.database_url))
                watchers = [asyncio.create_task(watch(client, job)) for job in jobs.values()]
                await run_worker(settings, wait=False, policy=policy)
                events = [e for watcher in watchers for e in await asyncio.wait_for(watcher, 30)]
    finally:
        await service.stop(0)

    base = f"https://127.0.0.1:{server.port}/files"
    # While queued the worker needs the link itself; the shown URL is redacted from the start.
    assert queued["broken"][0] == f"{base}/broken.safetensors"
    assert SECRET in (queued["broken"][1] or "")
    # The server was asked with the token (the download needs it) ...
    assert sorted(server.hits) == [
        f"/files/{name}.safetensors?token={SECRET}&sig={SECRET}" for name in ("broken", "gone")
    ]
    # ... and once the jobs ended, nothing anywhere holds it.
    done = job_rows(str(settings.database_url))
    assert done["broken"][:3] == (f"{base}/broken.safetensors", None, "failed")
    assert "too short to be a safetensors file" in done["broken"][3]
    assert done["gone"][:3] == (f"{base}/gone.safetensors", None, "failed")
    assert done["gone"][3] == f"{base}/gone.safetensors answered HTTP 404"
    assert SECRET not in repr(done)
    assert [e.message for e in events if e.state == pb.JOB_STATE_FAILED] == [
        done["broken"][3],
        done["gone"][3],
    ]
    assert all(SECRET not in e.message for e in events)
    assert logs, "the registration logged nothing: the check below would prove nothing"
    assert any(entry.get("event") == "registration_refused" for entry in logs)
    assert SECRET not in repr(logs)
    assert SECRET not in caplog.text


def test_migration_redacts_urls_stored_before_it(server_url: str, tmp_path: Path) -> None:
    """Rows written before 005: the live job keeps its link for the worker (fetch_url), every stored
    URL loses its query, and two live jobs for one path stay distinct."""
    name = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        before = tmp_path / "before"
        before.mkdir()
        for path in sorted(MIGRATIONS_DIR.glob("00[1-4]_*.sql")):
            shutil.copy(path, before / path.name)
        migrate(url, before)
        signed = f"https://civitai.com/api/download/models/1?token={SECRET}"
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO loras (slug, name, base_model, source_url) VALUES ('old', 'Old', 'sd1', %s)",
                (signed,),
            )
            for slug, state, source in (
                ("a", "queued", signed),
                ("b", "running", f"https://civitai.com/api/download/models/1?token=other-{SECRET}"),
                ("c", "failed", f"https://civitai.com/api/download/models/2#{SECRET}"),
                ("d", "queued", "staged:abc"),
            ):
                conn.execute(
                    "INSERT INTO registration_jobs (id, source_url, metadata, slug, state)"
                    " VALUES (%s, %s, '{}', %s, %s)",
                    (uuid.uuid4(), source, slug, state),
                )
        migrate(url)
        with psycopg.connect(url) as conn:
            jobs = conn.execute("SELECT slug, source_url, fetch_url FROM registration_jobs").fetchall()
            lora = conn.execute("SELECT source_url FROM loras").fetchone()
        rows = {slug: (source, fetch) for slug, source, fetch in jobs}
        assert lora == ("https://civitai.com/api/download/models/1",)
        assert rows["a"][1] == signed
        assert rows["a"][0].startswith("https://civitai.com/api/download/models/1#job-")
        assert rows["b"][0].startswith("https://civitai.com/api/download/models/1#job-")
        assert rows["a"][0] != rows["b"][0]
        assert rows["c"] == ("https://civitai.com/api/download/models/2", None)
        assert rows["d"] == ("staged:abc", None)
        assert SECRET not in repr({slug: row[0] for slug, row in rows.items()})
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
