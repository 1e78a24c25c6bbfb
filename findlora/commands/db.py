"""`findlora db init|migrate|status`."""

from __future__ import annotations

import typer

from findlora.console import console, fail, run

db_app = typer.Typer(help="Database: the embedded PostgreSQL+pgvector or DATABASE_URL.", no_args_is_help=True)


async def _migrate() -> None:
    from db.embedded import database_url
    from db.migrate import current_version, migrate
    from db.privileges import RuntimeRoleMissing
    from inference_service.config import Settings

    settings = Settings()
    url = database_url(settings.database_url, settings.pg_dir)
    try:
        applied = migrate(url, runtime_role=settings.runtime_role)
    except RuntimeRoleMissing as exc:
        fail(str(exc))
    where = "DATABASE_URL" if settings.database_url else f"embedded server in {settings.pg_dir}"
    for migration in applied:
        console.print(f"applied {migration.version:03d}_{migration.name}")
    console.print(f"database at schema version {current_version(url)} ({where})")
    if settings.runtime_role:
        console.print(f"runtime role {settings.runtime_role} granted the service's privileges")
    if settings.database_url is None:
        import psycopg

        from inference_service.local_client import LOCAL_CLIENT, ensure_local_client, token_path

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await ensure_local_client(conn, settings.data_dir)
        console.print(
            f"client {LOCAL_CLIENT!r} (every role): its token is in {token_path(settings.data_dir)}"
        )


@db_app.command("init")
def init() -> None:
    """Create the database (embedded by default) and apply every migration."""
    run(_migrate())


@db_app.command("migrate")
def migrate_cmd() -> None:
    """Apply migrations not applied yet, as the migration role (the schema's owner); with
    FINDLORA_RUNTIME_ROLE, grant that role what the service and worker need (DML only)."""
    run(_migrate())


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
