"""Faults: the database restarting under the service, a slow or flaky service under the client."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from prometheus_client import REGISTRY

from db.clients import Role
from db.migrate import migrate
from findlora_client import FindLoraClient, QueryImage, ServiceCallError, ServiceTimeout, ServiceUnreachable
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import start_service
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token, service_client

pytestmark = pytest.mark.db


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Path, str | None]]:
    """A private embedded server, so that restarting it disturbs no other test."""
    import pgserver

    pg_dir = Path(tempfile.mkdtemp(prefix="flrs-"))
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    yield str(server.get_uri()), pg_dir, server.system_user
    server.cleanup()
    shutil.rmtree(pg_dir, ignore_errors=True)


def restart_postgres(pg_dir: Path, system_user: str | None) -> None:
    """pg_ctl restart. As root the server runs as its own user: switch with runuser rather than
    subprocess's user= (a user switch inside a child forked from this many-threaded process
    has crashed)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
    # -l: the new postmaster logs to a file instead of holding this process's pipes open.
    command = [pg_ctl, "-D", str(pg_dir), "-l", str(pg_dir / "log"), "-w", "-m", "fast", "restart"]
    if system_user:
        command = ["runuser", "-u", system_user, "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


async def searches_waiting_on(conn: psycopg.AsyncConnection[Any], table: str, timeout: float = 20.0) -> int:
    """Sessions waiting for a lock on `table` (polled until there is one, or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        cur = await conn.execute(
            # Client sessions only: autovacuum may also queue for the lock after the import.
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.relation = %s::regclass AND NOT l.granted AND a.backend_type = 'client backend'",
            (table,),
        )
        row = await cur.fetchone()
        waiting = int(row[0]) if row else 0
        if waiting or time.monotonic() > deadline:
            return waiting
        await asyncio.sleep(0.05)


def unavailable_searches() -> float:
    """Search attempts the service answered UNAVAILABLE (the client's retries hide them)."""
    labels = {"rpc": "Search", "code": "UNAVAILABLE"}
    return REGISTRY.get_sample_value("findlora_rpc_requests_total", labels) or 0.0


async def test_database_restart_mid_search_then_searches_succeed(
    tmp_path: Path, own_postgres: tuple[str, Path, str | None]
) -> None:
    url, pg_dir, system_user = own_postgres
    settings = Settings(
        data_dir=tmp_path / "data", database_url=url, torch_threads=1, search_statement_timeout_ms=120_000
    )
    migrate(url)  # an external database is migrated by `findlora db migrate`, not by the service
    catalog = write_catalog(tmp_path / "catalog", n_loras=4, n_samples=3)
    runtime = await open_runtime(settings)
    await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
    await runtime.close()
    service = await start_service(settings, "127.0.0.1:0")
    query = [QueryImage((catalog / "samples" / "s00.png").read_bytes())]
    try:
        token = await issue_token(service, Role.SEARCH)
        async with service_client(service, token, timeout=30) as client:
            assert (await client.search(query, top_k=2)).matches
            failed_before = unavailable_searches()
            # The test's own session locks the references: the search's scoring query waits on
            # the lock, so the restart below lands while it is in flight, every time.
            blocker = await psycopg.AsyncConnection.connect(url)
            await blocker.execute("LOCK TABLE reference_images IN ACCESS EXCLUSIVE MODE")
            in_flight = asyncio.create_task(client.search(query, top_k=2))
            assert await searches_waiting_on(blocker, "reference_images") == 1
            assert not in_flight.done()
            await asyncio.to_thread(restart_postgres, pg_dir, system_user)
            # The restart ended the waiting query: the service answered that attempt UNAVAILABLE.
            # The client retries UNAVAILABLE with backoff, so the search may still succeed.
            (outcome,) = await asyncio.gather(in_flight, return_exceptions=True)
            assert unavailable_searches() > failed_before
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, ServiceCallError)
                assert outcome.code == grpc.StatusCode.UNAVAILABLE
                assert "database is unavailable" in outcome.message
            with pytest.raises(psycopg.OperationalError):  # the restart ended the lock holder too
                await blocker.execute("SELECT 1")
            await blocker.close()
            for _ in range(3):
                assert (await client.search(query, top_k=2)).matches[0].slug.startswith("style-")
            assert await client.health() == "SERVING"
    finally:
        await service.stop(0.5)


class FlakyService(pb_grpc.FindLoraServicer):  # type: ignore[misc]
    """A scripted service at the edge of the client: fails `failures` times with `code`, or stalls."""

    def __init__(self, code: grpc.StatusCode, failures: int, stall: float = 0.0) -> None:
        self.code, self.failures, self.stall, self.calls = code, failures, stall, 0

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        self.calls += 1
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.calls <= self.failures:
            await context.abort(self.code, f"scripted {self.code.name}")
        return pb.SearchResponse(search_id="ok")


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyService, grpc.aio.Server, int]]:
    servicer = FlakyService(grpc.StatusCode.OK, 0)
    server = grpc.aio.server()
    pb_grpc.add_FindLoraServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, server, port
    await server.stop(0)


@pytest.mark.parametrize(
    ("code", "failures", "expected_calls", "succeeds"),
    [
        (grpc.StatusCode.UNAVAILABLE, 2, 3, True),  # retried with backoff
        (grpc.StatusCode.INVALID_ARGUMENT, 1, 1, False),  # never retried
        (grpc.StatusCode.INTERNAL, 1, 1, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 1, False),
    ],
)
async def test_client_retries_only_on_unavailable(
    flaky: tuple[FlakyService, grpc.aio.Server, int],
    code: grpc.StatusCode,
    failures: int,
    expected_calls: int,
    succeeds: bool,
) -> None:
    servicer, _, port = flaky
    servicer.code, servicer.failures = code, failures
    async with FindLoraClient(f"127.0.0.1:{port}", timeout=10) as client:
        if succeeds:
            assert (await client.search([QueryImage(b"x")])).search_id == "ok"
        else:
            with pytest.raises(ServiceCallError) as info:
                await client.search([QueryImage(b"x")])
            assert info.value.code == code
    assert servicer.calls == expected_calls


async def test_slow_service_hits_the_deadline_with_a_clear_message(
    flaky: tuple[FlakyService, grpc.aio.Server, int],
) -> None:
    servicer, _, port = flaky
    servicer.stall = 5.0
    async with FindLoraClient(f"127.0.0.1:{port}", timeout=0.5) as client:
        with pytest.raises(ServiceTimeout, match="did not answer in time"):
            await asyncio.wait_for(client.search([QueryImage(b"x")]), timeout=4)


async def test_down_service_fails_fast_after_retries() -> None:
    async with FindLoraClient("127.0.0.1:1", timeout=5) as client:
        with pytest.raises(ServiceUnreachable):
            await asyncio.wait_for(client.search([QueryImage(b"x")]), timeout=8)
