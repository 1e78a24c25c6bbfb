"""The embedded server sizes its memory settings from the machine (db/embedded.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from db.embedded import TUNING_FILE, embedded_uri, machine_memory, server_tuning

pytestmark = pytest.mark.db


def test_tuning_scales_with_memory_and_stays_in_bounds() -> None:
    small, large = server_tuning(2 * 2**30, 1), server_tuning(64 * 2**30, 16)
    assert small["shared_buffers"] == "512MB"
    assert small["max_parallel_maintenance_workers"] == "0"
    assert large["shared_buffers"] == "16384MB"
    assert large["maintenance_work_mem"] == "2048MB"
    assert server_tuning(256 * 2**20, 1)["shared_buffers"] == "128MB"  # PostgreSQL's own default
    assert machine_memory() > 0


def test_embedded_server_starts_with_the_tuning() -> None:
    pg_dir = Path(tempfile.mkdtemp(prefix="fltune-"))  # short: a unix socket path must be short
    url = embedded_uri(pg_dir)
    expected = server_tuning(machine_memory(), os.cpu_count() or 1)
    with psycopg.connect(url) as conn:
        for key, value in expected.items():
            row = conn.execute("SELECT setting, unit FROM pg_settings WHERE name = %s", (key,)).fetchone()
            assert row is not None
            setting, unit = row
            # pg_settings reports memory in its unit (8kB pages, kB): compare in MB.
            scale = {"8kB": 8 / 1024, "kB": 1 / 1024, None: 1}[unit]
            got = float(setting) * scale
            assert got == pytest.approx(float(value.removesuffix("MB")), rel=1e-3), key
    assert (pg_dir / TUNING_FILE).exists()
    import pgserver

    pgserver.get_server(pg_dir).cleanup()  # the handle embedded_uri took: stop the server
    shutil.rmtree(pg_dir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="pgserver runs the server as its own user only as root")
def test_first_start_as_root_creates_the_system_user_before_initdb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh machine has no `pgserver` user until something creates it: the tuning step must,
    or initdb fails and the first server runs with PostgreSQL's defaults."""
    import pwd

    from pgserver import utils

    import db.embedded as embedded

    real_getpwnam, created = pwd.getpwnam, []

    def getpwnam(name: str) -> pwd.struct_passwd:
        if name == "pgserver" and not created:
            raise KeyError(name)  # the user a fresh machine does not have yet
        return real_getpwnam(name)

    def ensure_user_exists(name: str) -> pwd.struct_passwd:
        created.append(name)
        return real_getpwnam(name)  # this machine has it; a fresh one runs useradd here

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(utils, "ensure_user_exists", ensure_user_exists)
    pg_dir = Path(tempfile.mkdtemp(prefix="flroot-"))
    try:
        embedded._prepare(pg_dir)
        assert created == ["pgserver"]
        assert (pg_dir / "PG_VERSION").exists()
        assert (pg_dir / TUNING_FILE).exists()
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)
