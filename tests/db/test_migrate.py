from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from db.migrate import available_migrations, current_version, migrate

pytestmark = pytest.mark.db


def test_migrate_is_idempotent_and_builds_the_data_model(db_url: str) -> None:
    assert migrate(db_url) == []  # the fixture already migrated: nothing applies twice
    assert current_version(db_url) == available_migrations()[-1].version
    with psycopg.connect(db_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {
            "loras",
            "samples",
            "reference_images",
            "lora_style_summary",
            "spec_points",
            "prompts",
            "searches",
            "feedback",
            "flags",
            "audit_log",
        } <= tables
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'lora_style_summary_centroid'"
        ).fetchone()
        assert index is not None
        assert "hnsw" in index[0]
        assert "vector_l2_ops" in index[0]
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert version is not None
        assert tuple(int(p) for p in version[0].split(".")) >= (0, 8, 0)


def test_migration_names_are_numbered(tmp_path: pytest.TempPathFactory) -> None:
    names = [m.path.name for m in available_migrations()]
    assert names == sorted(names)
    assert [m.version for m in available_migrations()] == list(range(1, len(names) + 1))


def test_migration_012_drops_user_info_left_in_stored_source_urls(server_url: str, tmp_path: Path) -> None:
    """005 redacted queries and fragments only: a link stored with credentials in it
    (https://user:token@host/...) kept them until 012."""
    name = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    before = tmp_path / "before-012"
    before.mkdir()
    for migration in available_migrations():
        if migration.version < 12:
            shutil.copy(migration.path, before / migration.path.name)
    try:
        migrate(url, before)
        with psycopg.connect(url) as conn:
            jobs = [
                ("https://user:s3cret@example.org/a.safetensors", "queued"),
                ("https://example.org/a.safetensors", "running"),  # the same source, live too
                ("https://tok@example.org/b.safetensors", "succeeded"),
                ("https://example.org/c@d.safetensors", "succeeded"),  # an @ in the path stays
            ]
            ids = [
                conn.execute(
                    "INSERT INTO registration_jobs (id, source_url, metadata, slug, state)"
                    " VALUES (%s, %s, '{}', %s, %s) RETURNING id",
                    (uuid.uuid4(), source, f"lora-{n}", state),
                ).fetchone()
                for n, (source, state) in enumerate(jobs)
            ]
            conn.execute(
                "INSERT INTO loras (slug, name, base_model, source_url)"
                " VALUES ('x', 'X', 'sd1', 'https://me:pw@example.org:8443/x.safetensors')"
            )
        migrate(url)
        with psycopg.connect(url) as conn:
            stored = [
                conn.execute("SELECT source_url FROM registration_jobs WHERE id = %s", row).fetchone()[0]
                for row in ids
            ]
            lora = conn.execute("SELECT source_url FROM loras WHERE slug = 'x'").fetchone()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert not any("s3cret" in s or "tok@" in s for s in stored)
    assert stored[0] == f"https://example.org/a.safetensors#job-{ids[0][0]}"  # live: kept apart
    assert stored[1:] == [
        "https://example.org/a.safetensors",
        "https://example.org/b.safetensors",
        "https://example.org/c@d.safetensors",
    ]
    assert lora == ("https://example.org:8443/x.safetensors",)


def test_the_job_queue_schema_has_no_migration_findlora_does_not_apply() -> None:
    """`findlora db migrate` installs procrastinate's schema once and applies none of its own
    migrations: a procrastinate release that adds one must have it handled here (and the bound in
    pyproject.toml raised) before deployments pick it up."""
    import procrastinate

    migrations = sorted(
        path.name for path in (Path(procrastinate.__file__).parent / "sql" / "migrations").glob("*.sql")
    )
    assert migrations[-1] == "03.04.00_50_post_add_retry_failed_job_procedure.sql"
