"""start_service closes what it opened when a later step fails: a port already in use leaves no
database connection of the runtime's pool or the job queue's behind, and no background task."""

from __future__ import annotations

import asyncio
import socket

import psycopg
import pytest

from inference_service.config import Settings
from inference_service.errors import FailedPrecondition
from inference_service.server import start_service
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


def service_connections(url: str) -> int:
    """Client connections to the test database other than this probe's own."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def settle(url: str, expected: int, within_s: float = 5.0) -> int:
    """The connection count once it equals `expected` (a closed socket ends its backend shortly
    after), or the last count seen when it does not within `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    count = service_connections(url)
    while count != expected and loop.time() < deadline:
        await asyncio.sleep(0.1)
        count = service_connections(url)
    return count


def background_tasks() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_a_start_failing_at_the_port_closes_the_pool_and_the_queue(
    settings: Settings, db_url: str
) -> None:
    before = service_connections(db_url)
    tasks_before = background_tasks()

    # The measure sees a running service's connections, and stop() gives them back.
    running = await start_service(settings, "127.0.0.1:0")
    assert service_connections(db_url) > before
    await running.stop(0)
    assert await settle(db_url, before) == before

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(FailedPrecondition, match=f"cannot listen on {address}: the port is in use"):
            await start_service(settings, address)
        # As an operator sees it: one line that says what to do, no traceback.
        code, out, err = await findlora("serve", "inference", "--listen", address, env=cli_env(settings))
    assert code == 1
    assert f"cannot listen on {address}" in out + err
    assert "--listen or FINDLORA_LISTEN" in out + err
    assert "Traceback" not in out + err

    assert await settle(db_url, before) == before
    assert background_tasks() == tasks_before
