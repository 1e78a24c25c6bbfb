"""A served catalog whose LoRA `style-02` carries hostile catalog strings, searched for real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from db.clients import Role
from findlora_client import QueryImage
from inference_service.catalog.format import LoraEntry, lora_toml
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import start_service
from protos import findlora_pb2 as pb
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token, service_client

HOSTILE_SLUG = "style-02"
HOSTILE = LoraEntry(
    slug=HOSTILE_SLUG,
    name='<script>document.title="owned"</script> & <b>bold</b>',
    url="https://example.org/style-02",
    trigger_words=['"><img src=x onerror="document.title=1">', "plain"],
)
# Import refuses such a link now; one stored before that check (or written by hand) must still
# render as text.
HOSTILE_URL = "javascript:document.title='owned'"
TOP_K = 5


@dataclass(frozen=True)
class SearchedCatalog:
    catalog: Path
    query: bytes
    response: pb.SearchResponse
    address: str
    token: str

    def reference(self, slug: str, sample_id: str = "s00") -> Path:
        return self.catalog / "loras" / slug / "references" / f"{sample_id}.png"


@pytest.fixture
async def searched(settings: Settings, tmp_path: Path) -> AsyncIterator[SearchedCatalog]:
    """Six LoRAs, one hostile; a query made by the hostile one (so it ranks and renders)."""
    catalog = write_catalog(tmp_path / "catalog", n_loras=6, n_samples=4)
    (catalog / "loras" / HOSTILE_SLUG / "lora.toml").write_text(lora_toml(HOSTILE))
    runtime = await open_runtime(settings)
    try:
        await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
        async with runtime.db.connection() as conn:
            await conn.execute("UPDATE loras SET page_url = %s WHERE slug = %s", (HOSTILE_URL, HOSTILE_SLUG))
    finally:
        await runtime.close()
    service = await start_service(settings, "127.0.0.1:0")
    try:
        token = await issue_token(service, Role.SEARCH)
        query = (catalog / "loras" / HOSTILE_SLUG / "references" / "s01.png").read_bytes()
        async with service_client(service, token) as client:
            response = await client.search([QueryImage(query, "query.png")], top_k=TOP_K)
        yield SearchedCatalog(catalog, query, response, f"127.0.0.1:{service.port}", token)
    finally:
        await service.stop(0)
