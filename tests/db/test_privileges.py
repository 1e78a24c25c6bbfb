"""Least privilege, as docker/compose.yaml deploys it: the postgres init script creates the roles,
`findlora db migrate` runs as the migration role and grants the runtime role, and the service and
the worker run as the runtime role, which can read and write rows but not change the schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from db.clients import Role
from db.migrate import MIGRATIONS_DIR, SchemaBehind, migrate
from db.privileges import RuntimeRoleMissing
from findlora_client import FindLoraClient, QueryImage
from inference_service.catalog.encoders import activate
from inference_service.config import Settings
from inference_service.registration.jobs import run_worker
from inference_service.server import start_service
from protos import findlora_pb2 as pb
from tests.helpers.encoders import perturbed
from tests.helpers.service import served_catalog

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parents[2]
INIT_SCRIPT = ROOT / "docker" / "postgres" / "init-roles.sh"


@dataclass(frozen=True)
class Deployed:
    superuser_url: str
    migrate_url: str  # findlora_migrate: owns the schema
    app_url: str  # findlora_app: the service and the worker


def url_as(server_url: str, user: str, dbname: str = "findlora") -> str:
    return psycopg.conninfo.make_conninfo(server_url, user=user, dbname=dbname, password="")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """A private server set up by the compose init script, migrated by the CLI one-shot step."""
    import pgserver
    from pgserver._commands import POSTGRES_BIN_PATH

    pg_dir = Path(tempfile.mkdtemp(prefix="flpv-"))
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    superuser_url = str(server.get_uri())
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "postgres_migrate_password").write_text("migrate-password")
    (secrets / "postgres_app_password").write_text("app-password")
    socket_dir = psycopg.conninfo.conninfo_to_dict(superuser_url)["host"]
    subprocess.run(
        ["sh", str(INIT_SCRIPT)],
        env={
            **os.environ,
            "PATH": f"{POSTGRES_BIN_PATH}:{os.environ['PATH']}",
            "POSTGRES_USER": "postgres",
            "PGHOST": str(socket_dir),
            "FINDLORA_SECRETS_DIR": str(secrets),
        },
        check=True,
        capture_output=True,
        timeout=60,
    )
    deployed = Deployed(
        superuser_url, url_as(superuser_url, "findlora_migrate"), url_as(superuser_url, "findlora_app")
    )
    # The compose `migrate` service: `findlora db migrate` as the schema owner.
    result = subprocess.run(
        [sys.executable, "-m", "findlora", "db", "migrate"],
        env={**os.environ, "DATABASE_URL": deployed.migrate_url, "FINDLORA_RUNTIME_ROLE": "findlora_app"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "runtime role findlora_app granted" in result.stdout
    yield deployed
    server.cleanup()
    shutil.rmtree(pg_dir, ignore_errors=True)


def test_the_roles_are_what_compose_documents(deployed: Deployed) -> None:
    with psycopg.connect(deployed.superuser_url) as conn:
        roles = dict(
            conn.execute(
                "SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles"
                " WHERE rolname IN ('findlora_migrate', 'findlora_app')"
            ).fetchall()
        )
    assert roles == {"findlora_migrate": False, "findlora_app": False}
    with psycopg.connect(deployed.migrate_url) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    assert owners == [("findlora_migrate",)]  # every table, procrastinate's included


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "DROP TABLE searches",
        "ALTER TABLE searches ADD COLUMN intruder int",
        "TRUNCATE feedback",
        "CREATE INDEX intruder ON searches (created_at)",
        "DROP FUNCTION lora_style_summary_fill() CASCADE",
        "INSERT INTO schema_migrations (version, name) VALUES (999, 'intruder')",
        # Who did what stays as written: the audit log is append-only, flags are never deleted.
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "DELETE FROM flags",
    ],
)
def test_the_runtime_role_cannot_change_the_schema(deployed: Deployed, statement: str) -> None:
    with psycopg.connect(deployed.app_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_a_takedown_cannot_be_undone_even_by_the_runtime_roles_sql(deployed: Deployed) -> None:
    with psycopg.connect(deployed.app_url) as conn:
        conn.execute(
            "INSERT INTO loras (slug, name, base_model, status) VALUES ('gone', 'Gone', 'sd1', 'taken_down')"
        )
        with pytest.raises(errors.CheckViolation, match="gone was taken down"):
            conn.execute("UPDATE loras SET status = 'active' WHERE slug = 'gone'")
        conn.rollback()


def test_the_runtime_role_adds_a_client_as_the_deploy_guide_does(deployed: Deployed, tmp_path: Path) -> None:
    """docs/deploy.md runs `findlora auth add` in the service's container, as the runtime role:
    it must only check the schema, not try to migrate it."""
    result = subprocess.run(
        [sys.executable, "-m", "findlora", "auth", "add", "k8s-bot", "--role", "search", "--json"],
        env={**os.environ, "DATABASE_URL": deployed.app_url, "FINDLORA_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "k8s-bot"


async def test_the_runtime_role_searches_votes_and_queues_and_runs_a_job(
    deployed: Deployed, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=deployed.app_url,
        torch_threads=1,
        listen="127.0.0.1:0",
        # Accepted by the service's host check; the worker's download policy then refuses a
        # loopback address, so the job ends quickly without any network.
        registration_allowed_hosts=["127.0.0.1"],
    )
    async with (
        served_catalog(settings, tmp_path) as served,  # the catalog import runs as the runtime role too
        served.client(Role.MODERATE, timeout=30) as client,
    ):
        # The memory index reads summaries and tombstones as the runtime role, and each search syncs it.
        index = served.service.engine.centroid_index if served.service.engine else None
        assert index is not None
        await index.wait_ready()
        assert index.ready
        response = await client.search([QueryImage(served.reference_bytes("style-03"), "q.png")], top_k=3)
        assert response.matches[0].slug == "style-03"
        assert (await client.get_page(response.search_id, 1, 2)).matches
        top = response.matches[0].lora_id
        assert await client.record_feedback(response.search_id, top, up=True, user="u1")
        assert served.service.purge is not None
        await served.service.purge.run_once()  # DELETE on searches: granted
        job_id = await client.register_lora(
            "https://127.0.0.1/inkwash.safetensors",
            pb.LoraMetadata(name="Ink wash", base_model="sd1"),
            requested_by="mod",
        )
        with psycopg.connect(url_as(deployed.superuser_url, "postgres")) as conn:
            queued = conn.execute(
                "SELECT status FROM procrastinate_jobs WHERE lock = %s", (job_id,)
            ).fetchone()
        assert queued == ("todo",)

        # The worker, as the runtime role: takes the job (procrastinate's functions and
        # triggers), runs it, records the refusal, finishes the queue job.
        await run_worker(settings, wait=False)
        events = [e async for e in client.watch_job(job_id, timeout=30)]
        assert events[-1].state == pb.JOB_STATE_FAILED
        assert "127.0.0.1" in events[-1].message or "address" in events[-1].message

        # An activation (what `catalog adapt`, its worker job, rollback and reembed end with)
        # re-embeds through a temporary table: the role needs TEMPORARY, which compose's init
        # script revokes from PUBLIC.
        engine = served.service.engine
        assert engine is not None
        current = engine.encoders.loaded
        await activate(engine.db, engine.blobs, perturbed(current), current=current)
    with psycopg.connect(deployed.migrate_url) as conn:
        finished = conn.execute("SELECT status FROM procrastinate_jobs WHERE lock = %s", (job_id,)).fetchone()
    assert finished == ("succeeded",)


def test_tables_a_later_migration_adds_are_granted_by_default(deployed: Deployed, tmp_path: Path) -> None:
    later = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, later)
    table = "CREATE TABLE later (id bigint GENERATED ALWAYS AS IDENTITY, x text);"
    (later / "999_later.sql").write_text(table)
    migrate(deployed.migrate_url, later)  # no runtime_role: only the default privileges grant it
    with psycopg.connect(deployed.app_url) as conn:
        conn.execute("INSERT INTO later (x) VALUES ('x')")
        assert conn.execute("SELECT count(*) FROM later").fetchone() == (1,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DROP TABLE later")


def test_a_runtime_role_that_does_not_exist_is_named(deployed: Deployed) -> None:
    with pytest.raises(RuntimeRoleMissing, match=r"'findlora_nobody'.*no such role"):
        migrate(deployed.migrate_url, runtime_role="findlora_nobody")


# --- the service does not migrate an external database; it refuses to start behind it -------


async def test_the_service_refuses_a_schema_that_is_behind_and_names_the_command(
    server_url: str, tmp_path: Path
) -> None:
    name = f"behind_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql"))[:-1]:  # this release's last migration missing
        shutil.copy(path, older)
    latest = sorted(MIGRATIONS_DIR.glob("*.sql"))[-1].stem
    settings = Settings(data_dir=tmp_path / "data", database_url=url, torch_threads=1, listen="127.0.0.1:0")
    try:
        migrate(url, older)
        with pytest.raises(SchemaBehind) as caught:
            await start_service(settings)
        assert "run `findlora db migrate`" in str(caught.value)
        assert latest in str(caught.value)
        with psycopg.connect(url) as conn:  # and it changed nothing
            version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        assert version == (int(max(p.name for p in older.iterdir())[:3]),)

        migrate(url)
        service = await start_service(settings)
        try:
            async with FindLoraClient(f"127.0.0.1:{service.port}") as client:
                assert await client.health() == "SERVING"
        finally:
            await service.stop(0)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_an_empty_external_database_is_refused_too(settings: Settings, server_url: str) -> None:
    name = f"empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        empty = settings.model_copy(
            update={"database_url": psycopg.conninfo.make_conninfo(server_url, dbname=name)}
        )
        with pytest.raises(SchemaBehind, match=r"001_init.*findlora db migrate"):
            await start_service(empty)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_from_before_the_roles_is_adopted_by_the_migration_role(deployed: Deployed) -> None:
    """docs/deploy.md "Upgrading": a database one superuser created and migrated, handed over."""
    from pgserver._commands import POSTGRES_BIN_PATH

    with psycopg.connect(deployed.superuser_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE legacy")
    legacy_superuser = url_as(deployed.superuser_url, "postgres", "legacy")
    migrate(legacy_superuser)  # the old way: everything owned by the superuser
    psql = [str(POSTGRES_BIN_PATH / "psql"), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-q"]
    subprocess.run(
        [*psql, "-d", legacy_superuser, "-f", str(ROOT / "docker" / "postgres" / "adopt-existing.sql")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with psycopg.connect(legacy_superuser) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S', 'i')"
        ).fetchall()
    assert owners == [("findlora_migrate",)]

    later = Path(tempfile.mkdtemp())
    shutil.copytree(MIGRATIONS_DIR, later, dirs_exist_ok=True)
    (later / "999_alter.sql").write_text("ALTER TABLE searches ADD COLUMN later int;")
    migrate(url_as(deployed.superuser_url, "findlora_migrate", "legacy"), later, runtime_role="findlora_app")
    with psycopg.connect(url_as(deployed.superuser_url, "findlora_app", "legacy")) as conn:
        conn.execute("DELETE FROM searches")
        conn.execute("SELECT procrastinate_register_worker_v1()")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DROP TABLE searches")
    shutil.rmtree(later, ignore_errors=True)
