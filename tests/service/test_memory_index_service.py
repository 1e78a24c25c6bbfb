"""The service's in-memory centroid index (FINDLORA_CENTROID_INDEX): built at start-up, kept
current by each search, off when the setting says 'database'."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.clients import Role
from findlora_client import QueryImage
from inference_service.config import Settings
from protos import findlora_pb2 as pb
from tests.helpers.service import served_catalog

pytestmark = pytest.mark.db


async def test_searches_keep_the_index_current_without_a_rebuild(settings: Settings, tmp_path: Path) -> None:
    async with served_catalog(settings, tmp_path) as served, served.client(Role.ADMIN) as client:
        index = served.service.engine.centroid_index if served.service.engine else None
        assert index is not None
        await index.wait_ready()
        built = index.view
        assert built is not None
        assert built.live == 6
        query = [QueryImage(served.reference_bytes("style-01"), "query.png", "image/png")]
        assert (await client.search(query, top_k=1)).matches[0].slug == "style-01"

        await client.set_lora_status("style-01", pb.LORA_STATUS_TAKEN_DOWN, moderator="mod")
        response = await client.search(query, top_k=10)
        assert "style-01" not in [m.slug for m in response.matches]
        synced = index.view
        assert synced is not None
        assert synced.generation > built.generation  # the search applied the takedown itself
        assert index.rebuilds == 1
        taken_down = synced.lora_ids[synced.alive & ~synced.searchable].tolist()
        assert len(taken_down) == 1


async def test_the_database_setting_leaves_the_index_out(settings: Settings, tmp_path: Path) -> None:
    database = settings.model_copy(update={"centroid_index": "database"})
    async with served_catalog(database, tmp_path) as served, served.client(Role.SEARCH) as client:
        assert served.service.engine is not None
        assert served.service.engine.centroid_index is None
        query = [QueryImage(served.reference_bytes("style-02"), "query.png", "image/png")]
        assert (await client.search(query, top_k=1)).matches[0].slug == "style-02"
