"""Activating another style encoder under a running service: it switches without a restart, a
search never ranks with two encoders, old searches say to search again, rollback restores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from db import ranking
from db.clients import Role
from db.encoders import EncoderChanged, get_encoder, label_guard, list_encoders
from findlora_client import QueryImage, Reason, ServiceCallError
from inference_service.catalog.adaptation import rollback
from inference_service.catalog.encoders import activate
from inference_service.config import Settings
from inference_service.models import active
from inference_service.models.style_encoder import StyleEmbedder
from inference_service.search.engine import SEARCH_OUTDATED
from protos import findlora_pb2 as pb
from tests.helpers.encoders import expected_d_avg, perturbed, stored_embeddings
from tests.helpers.service import served_catalog

pytestmark = pytest.mark.db


def distances(response: pb.SearchResponse) -> dict[str, float]:
    return {m.slug: m.style_distance for m in response.matches}


def assert_ranked_by(response: pb.SearchResponse, expected: dict[str, float]) -> None:
    """The response is the top of `expected` (d_avg by one encoder), in its order and distances."""
    got = distances(response)
    best = sorted(expected, key=lambda slug: expected[slug])[: len(got)]
    assert list(got) == best
    assert got == pytest.approx({slug: expected[slug] for slug in best}, abs=1e-4)


async def search_encoder(served: Any, search_id: str) -> str | None:
    async with served.service.runtime.db.connection() as conn:
        cur = await conn.execute("SELECT encoder FROM searches WHERE id = %s", (search_id,))
        row = await cur.fetchone()
    return None if row is None else row[0]


async def test_activation_switches_a_running_service_and_rollback_restores(
    settings: Settings, tmp_path: Path
) -> None:
    async with (
        served_catalog(settings, tmp_path, n_loras=6, n_samples=4) as served,
        served.client(Role.SEARCH) as client,
    ):
        runtime = served.service.runtime
        original = runtime.embedder
        data = served.reference_bytes("style-02")
        query = [QueryImage(data, "q.png")]
        first = await client.search(query, top_k=6)
        assert_ranked_by(first, await expected_d_avg(runtime.db, runtime.blobs, original, data))
        assert await search_encoder(served, first.search_id) == original.label
        originals = await stored_embeddings(runtime.db)

        # Another process (the CLI) activates: the service holds no reference to `new`.
        new = perturbed(original)
        done = await activate(
            runtime.db, runtime.blobs, StyleEmbedder(new.model, new.label), current=original
        )
        assert (done.label, done.previous, done.references, done.loras) == (new.label, original.label, 24, 6)

        second = await client.search(query, top_k=6)
        with_new = await expected_d_avg(runtime.db, runtime.blobs, new, data)
        assert_ranked_by(second, with_new)
        assert distances(second) != pytest.approx(distances(first), abs=1e-3)
        assert await search_encoder(served, second.search_id) == new.label
        assert runtime.encoders.loaded.label == new.label  # loaded from the blob store, no restart

        # Paging a search of the earlier encoder says to search again; the new one pages.
        with pytest.raises(ServiceCallError) as info:
            await client.get_page(first.search_id, 2, 2)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.reason == Reason.SEARCH_OUTDATED
        assert info.value.message == SEARCH_OUTDATED
        assert [m.slug for m in (await client.get_page(second.search_id, 2, 2)).matches] == [
            m.slug for m in second.matches[2:4]
        ]

        registry = {row.label: row for row in await runtime.db.run(list_encoders)}
        assert set(registry) == {original.label, new.label}
        assert registry[new.label].parent == original.label
        assert (settings.blob_dir / registry[new.label].blob_key).is_file()

        back = await rollback(runtime.db, runtime.blobs, runtime.encoders)
        assert (back.label, back.previous) == (original.label, new.label)
        restored = await stored_embeddings(runtime.db)
        assert restored.keys() == originals.keys()
        for key, embedding in originals.items():
            # stored as halfvec: embedded again (in other batches), a value may round one ulp apart
            np.testing.assert_allclose(restored[key], embedding, rtol=2**-10, atol=1e-6)
        third = await client.search(query, top_k=6)
        assert distances(third) == pytest.approx(distances(first), abs=1e-5)
        assert await search_encoder(served, third.search_id) == original.label


async def test_a_search_racing_an_activation_is_embedded_again_never_mixed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        served_catalog(settings, tmp_path, n_loras=6, n_samples=4) as served,
        served.client(Role.SEARCH) as client,
    ):
        runtime, engine = served.service.runtime, served.service.engine
        assert engine is not None
        original = runtime.embedder
        new = perturbed(original, seed=2)
        data = served.reference_bytes("style-04")
        embedded_with: list[str] = []
        real_embed = engine.embed

        async def embed_then_activate(images: Any, deadline: Any = None, *, embedder: Any = None) -> Any:
            out = await real_embed(images, deadline, embedder=embedder)
            embedded_with.append(embedder.label)
            if len(embedded_with) == 1:  # the activation commits between this embed and the ranking
                await activate(runtime.db, runtime.blobs, new, current=original)
            return out

        monkeypatch.setattr(engine, "embed", embed_then_activate)
        response = await client.search([QueryImage(data, "q.png")], top_k=6)
        assert embedded_with == [original.label, new.label]
        assert_ranked_by(response, await expected_d_avg(runtime.db, runtime.blobs, new, data))
        assert await search_encoder(served, response.search_id) == new.label


async def test_the_ranking_snapshot_keeps_one_encoder(settings: Settings, tmp_path: Path) -> None:
    async with served_catalog(settings, tmp_path, n_loras=4, n_samples=3) as served:
        runtime = served.service.runtime
        original = runtime.embedder
        query = original.embed([Image.new("RGB", (64, 64), "red")])
        async with runtime.db.connection() as conn:
            cur = await conn.execute("SELECT id FROM loras ORDER BY id")
            ids = [int(r[0]) for r in await cur.fetchall()]
        guard = label_guard(original.label)
        async with runtime.db.search_connection(guard) as conn:
            before = await ranking.d_avg_of(conn, list(query), ids)
            await activate(runtime.db, runtime.blobs, perturbed(original, seed=3), current=original)
            # Committed meanwhile, but this snapshot still holds the encoder its guard checked.
            assert await ranking.d_avg_of(conn, list(query), ids) == before
        with pytest.raises(EncoderChanged):
            async with runtime.db.search_connection(guard):
                pass


async def test_damaged_weights_of_the_active_encoder_are_a_clear_refusal_loaded_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad restore of the blob store: searches say CATALOG_STALE with what to run (not INTERNAL),
    the damaged file is read once, not by every search, and `findlora status` still answers."""
    async with served_catalog(settings, tmp_path) as served, served.client(Role.SEARCH) as client:
        runtime = served.service.runtime
        adapted = perturbed(runtime.embedder, seed=5)
        await activate(runtime.db, runtime.blobs, adapted, current=runtime.embedder)
        row = await runtime.db.run(get_encoder, adapted.label)
        assert row is not None
        runtime.blobs.path(row.blob_key).write_bytes(b"not a safetensors file")
        loads = 0
        load = active.load_encoder

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal loads
            loads += 1
            return load(*args, **kwargs)

        monkeypatch.setattr(active, "load_encoder", counted)
        query = [QueryImage(served.reference_bytes("style-00"), "q.png")]

        async def refusal() -> ServiceCallError:
            with pytest.raises(ServiceCallError) as refused:
                await client.search(query, top_k=2)
            return refused.value

        refusals = await asyncio.gather(*(refusal() for _ in range(6)))
        assert {(r.code, r.reason) for r in refusals} == {
            (grpc.StatusCode.FAILED_PRECONDITION, Reason.CATALOG_STALE)
        }
        assert "cannot be loaded" in refusals[0].message
        assert "--rollback" in refusals[0].message
        assert loads == 1
        status = await client.service_status()
        assert status.catalog_encoder == adapted.label
