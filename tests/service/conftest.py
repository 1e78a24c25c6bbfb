"""A real aio gRPC service on port 0 over an imported test catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.client import FindLoraClient
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import RunningService, start_service
from tests.helpers.catalogs import write_catalog


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
    await import_catalog(catalog_dir, runtime.repo, runtime.blobs, runtime.embedder)
    await runtime.close()
    running = await start_service(settings, "127.0.0.1:0")
    yield running
    await running.stop(0.5)


@pytest.fixture
async def client(service: RunningService) -> AsyncIterator[FindLoraClient]:
    async with FindLoraClient(f"127.0.0.1:{service.port}", timeout=20) as c:
        yield c
