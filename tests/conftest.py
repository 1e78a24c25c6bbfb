"""Fixtures: the embedded PostgreSQL (or DATABASE_URL), a fresh database per test, settings."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import torch

from db.clients import Role
from db.database import Database
from db.scratch import scratch_database
from findlora_client import FindLoraClient
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import RunningService, start_service
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token, service_client

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


@pytest.fixture
def db_url(server_url: str) -> Iterator[str]:
    """A new, migrated database for one test."""
    with scratch_database(server_url, "t") as url:
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A pool on the test's database, for the query functions of db/."""
    database = await Database.open(db_url, max_size=4)
    yield database
    await database.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, torch_threads=1, listen="127.0.0.1:0")


# A real aio gRPC service on port 0 over an imported test catalog.


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "catalog", n_loras=20, n_samples=10)


@pytest.fixture
async def empty_service(settings: Settings) -> AsyncIterator[RunningService]:
    service = await start_service(settings, "127.0.0.1:0")
    yield service
    await service.stop(0.5)


@pytest.fixture
async def service(settings: Settings, catalog_dir: Path) -> AsyncIterator[RunningService]:
    runtime = await open_runtime(settings)
    await import_catalog(catalog_dir, runtime.db, runtime.blobs, runtime.embedder)
    await runtime.close()
    running = await start_service(settings, "127.0.0.1:0")
    yield running
    await running.stop(0.5)


@pytest.fixture
async def admin_token(service: RunningService) -> str:
    """A client holding every role (admin includes moderate and search)."""
    return await issue_token(service, Role.ADMIN, "test-admin")


@pytest.fixture
async def search_token(service: RunningService) -> str:
    return await issue_token(service, Role.SEARCH, "test-search")


@pytest.fixture
async def client(service: RunningService, admin_token: str) -> AsyncIterator[FindLoraClient]:
    async with service_client(service, admin_token, timeout=20) as c:
        yield c
