"""Fixtures: the embedded PostgreSQL (or DATABASE_URL), a fresh database per test, settings."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import torch

from db.migrate import migrate
from db.repository import Repository
from inference_service.config import Settings

# Tiny models on 2 busy cores are far slower with torch's default thread count.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """An admin URL: DATABASE_URL when set, else an embedded server in a short temp path."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    pg_dir = Path(tempfile.mkdtemp(prefix="flpg-"))
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    yield str(server.get_uri())
    server.cleanup()
    shutil.rmtree(pg_dir, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


@pytest.fixture
def db_url(server_url: str) -> Iterator[str]:
    """A new, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def repo(db_url: str) -> AsyncIterator[Repository]:
    repository = await Repository.open(db_url, max_size=4)
    yield repository
    await repository.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, torch_threads=1, listen="127.0.0.1:0")
