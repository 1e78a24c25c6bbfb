"""The embedded database starts wherever a checkout or data directory may be, and a process
killed while holding it does not keep the server alive for ever."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from db.embedded import embedded_uri

pytestmark = pytest.mark.db
REPO = Path(__file__).resolve().parents[2]


def release(pg_dir: Path) -> None:
    """Give back the handle embedded_uri took in this process (the last one stops the server)."""
    import pgserver

    pgserver.get_server(pg_dir).cleanup()


def stopped(pg_dir: Path, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while (pg_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not (pg_dir / "postmaster.pid").exists()


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="flpath-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", ["My Projects/findlora", "long-" + "x" * 90])
def test_a_path_with_a_space_or_too_long_for_a_socket_starts(scratch: Path, name: str) -> None:
    """pg_ctl split the socket directory at a space ("invalid argument"); a path over the unix
    socket limit was refused by a length check although pgserver moves such a socket itself."""
    pg_dir = scratch / name / ".findlora" / "pg"
    url = embedded_uri(pg_dir)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        release(pg_dir)
    assert stopped(pg_dir)


def test_a_killed_holder_does_not_keep_the_server_running(scratch: Path) -> None:
    """A process killed while it held the server never ran its exit hook: its pid stayed in the
    handle list, and the server outlived every later run."""
    pg_dir = scratch / "pg"
    killed = subprocess.run(
        [sys.executable, "-c", f"import os, signal\nfrom db.embedded import embedded_uri\n"
         f"embedded_uri(__import__('pathlib').Path({str(pg_dir)!r}))\nos.kill(os.getpid(), signal.SIGKILL)"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (pg_dir / "postmaster.pid").exists()  # left running, as a kill leaves it
    url = embedded_uri(pg_dir)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    release(pg_dir)
    assert stopped(pg_dir)


async def test_a_terminated_command_gives_the_server_back(scratch: Path) -> None:
    """`timeout`, a closed terminal or `docker stop` send SIGTERM or SIGHUP: the CLI died without
    its exit hooks, never gave back its handle, and the embedded server outlived it."""
    import asyncio
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDLORA_", "DATABASE_URL"))}
    env["FINDLORA_DATA_DIR"] = str(scratch / "data")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "findlora", "lora", "register"),
        *("https://civitai.com/api/download/models/1", "--name", "Waits for a worker"),
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    queued = await asyncio.wait_for(process.stdout.readline(), timeout=120)
    assert b"queued" in queued  # it holds the database and waits for a worker that never comes
    assert (scratch / "data" / "pg" / "postmaster.pid").exists()
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=60) == 128 + signal.SIGTERM
    assert stopped(scratch / "data" / "pg")
