"""Retention: an expired search is deleted by the running service, and GetPage says which state
it is in (FAILED_PRECONDITION while expired, NOT_FOUND once deleted), through the real RPC."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from structlog.testing import capture_logs

from db import searches
from db.clients import Role
from db.database import Database
from db.migrate import migrate
from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from inference_service.config import Settings
from inference_service.retention import SearchPurge
from tests.helpers.service import ServedCatalog, served_catalog
from tests.helpers.waits import eventually

pytestmark = pytest.mark.db
TTL_HOURS = 2 / 3600  # two seconds: FINDLORA_SEARCH_TTL_HOURS takes fractions


@asynccontextmanager
async def serving(settings: Settings, tmp_path: Path, **overrides: Any) -> AsyncIterator[ServedCatalog]:
    async with served_catalog(settings.model_copy(update=overrides), tmp_path) as served:
        yield served


async def one_search(client: FindLoraClient, served: ServedCatalog) -> str:
    response = await client.search([QueryImage(served.reference_bytes("style-02"), "q.png")], top_k=2)
    return response.search_id


async def page_error(client: FindLoraClient, search_id: str) -> ServiceCallError:
    with pytest.raises(ServiceCallError) as caught:
        await client.get_page(search_id, 0, 2)
    return caught.value


def stored_rows(url: str, search_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM searches WHERE id = %s", (uuid.UUID(search_id),)).fetchone()
    assert row is not None
    return int(row[0])


async def until_expired(url: str, search_id: str) -> None:
    """Wait for the database clock to pass the search's expiry (at most the TTL and a margin)."""
    for _ in range(100):
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT expires_at <= now() FROM searches WHERE id = %s", (uuid.UUID(search_id),)
            ).fetchone()
        if row is None or row[0]:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the search did not expire")


async def test_expired_search_is_failed_precondition_until_the_purge_then_not_found(
    settings: Settings, tmp_path: Path
) -> None:
    url = str(settings.database_url)
    # An hour between purges: the only purge after the search is the one this test runs.
    async with (
        serving(settings, tmp_path, search_ttl_hours=TTL_HOURS, purge_interval_s=3600.0) as served,
        served.client(Role.SEARCH, timeout=20) as client,
    ):
        search_id = await one_search(client, served)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT expires_at - created_at FROM searches WHERE id = %s", (uuid.UUID(search_id),)
            ).fetchone()
        assert row is not None
        assert row[0] == timedelta(seconds=2)  # the fractional TTL, exactly

        await until_expired(url, search_id)
        expired = await page_error(client, search_id)
        assert expired.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "expired" in expired.message
        assert stored_rows(url, search_id) == 1  # expired, not yet deleted

        assert served.service.purge is not None
        assert await served.service.purge.run_once() >= 1
        assert stored_rows(url, search_id) == 0  # embedding, caption, ranking, requester: gone
        gone = await page_error(client, search_id)
        assert gone.code == grpc.StatusCode.NOT_FOUND
        assert gone.message.startswith("no such search")


async def test_the_running_service_purges_on_its_own_and_stops_purging_when_stopped(
    settings: Settings, tmp_path: Path
) -> None:
    url = str(settings.database_url)
    async with (
        serving(settings, tmp_path, search_ttl_hours=TTL_HOURS, purge_interval_s=0.2) as served,
        served.client(Role.SEARCH, timeout=20) as client,
    ):
        purge = served.service.purge
        assert purge is not None
        assert purge.running
        search_id = await one_search(client, served)
        for _ in range(150):  # TTL 2 s + one interval, with a wide margin for a busy machine
            if stored_rows(url, search_id) == 0:
                break
            await asyncio.sleep(0.1)
        assert stored_rows(url, search_id) == 0, "the purge task never deleted the expired search"
        assert (await page_error(client, search_id)).code == grpc.StatusCode.NOT_FOUND
        assert await client.health() == "SERVING"
    assert not purge.running  # cancelled with the service


async def test_a_live_search_is_kept(db: Database) -> None:
    live, _ = await db.run(
        searches.save_search,
        query=np.zeros(128, np.float32),
        pseudo_prompt="a caption",
        ranking=[],
        filters={},
        requested_by="discord:1",
        ttl_hours=1.0,
    )
    dead, _ = await db.run(
        searches.save_search,
        query=np.zeros(128, np.float32),
        pseudo_prompt="a caption",
        ranking=[],
        filters={},
        requested_by="discord:2",
        ttl_hours=-1.0,
    )
    assert await SearchPurge(db, 60.0).run_once() == 1
    assert await db.run(searches.get_search, live) is not None
    assert await db.run(searches.get_search, dead) is None


# --- a database outage does not stop the purge ---------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Path, str | None]]:
    """A private embedded server, so stopping it disturbs no other test."""
    import pgserver

    pg_dir = Path(tempfile.mkdtemp(prefix="flpu-"))
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    yield str(server.get_uri()), pg_dir, server.system_user
    server.cleanup()
    shutil.rmtree(pg_dir, ignore_errors=True)


def pg_ctl(pg_dir: Path, system_user: str | None, *args: str) -> None:
    """pg_ctl as the server's own user (runuser as root: see tests/reliability/test_faults.py)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pg_dir), "-w", *args]
    if system_user:
        command = ["runuser", "-u", system_user, "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def add_expired_search(url: str) -> uuid.UUID:
    search_id = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO searches (id, query_embedding, ranking, expires_at)"
            " VALUES (%s, array_fill(0, ARRAY[128])::vector, '[]', now() - interval '1 second')",
            (search_id,),
        )
    return search_id


def search_exists(url: str, search_id: uuid.UUID) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT 1 FROM searches WHERE id = %s", (search_id,)).fetchone() is not None


async def test_the_purge_survives_a_database_outage(own_postgres: tuple[str, Path, str | None]) -> None:
    url, pg_dir, system_user = own_postgres
    socket_dir = url.rsplit("host=", 1)[1]
    migrate(url)
    db = await Database.open(url, max_size=2, timeout=1.0)
    purge = SearchPurge(db, interval_s=0.1)
    try:
        with capture_logs() as logs:
            purge.start()
            before = add_expired_search(url)
            await eventually(lambda: not search_exists(url, before), "the expired search purged", 10)

            await asyncio.to_thread(pg_ctl, pg_dir, system_user, "-m", "fast", "stop")
            await eventually(
                lambda: len([e for e in logs if e["event"] == "search_purge_failed"]) >= 2,
                "the purge logging each failed round and keeping going",
                30,
            )
            assert purge.running
            failures = [e for e in logs if e["event"] == "search_purge_failed"]
            assert failures[0]["log_level"] == "warning"

            # Started as pgserver starts it: no TCP, the same socket directory.
            options = ["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pg_dir / "log")]
            await asyncio.to_thread(pg_ctl, pg_dir, system_user, *options, "start")
            after = await asyncio.to_thread(add_expired_search, url)
            await eventually(lambda: not search_exists(url, after), "the search purged after the restart", 60)
            assert purge.running
    finally:
        await purge.stop()
        await db.close()
