"""Registration end to end: RegisterLora -> queue -> worker -> WatchJob, on tiny models, on CPU."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest

from db.clients import Role
from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from inference_service.config import Settings
from inference_service.registration.fetch import FetchPolicy, is_public_address
from inference_service.registration.jobs import run_worker
from protos import findlora_pb2 as pb
from tests.helpers.https import LocalServer, body, https_server
from tests.helpers.service import served_catalog
from tests.helpers.tiny_sd import TinyModels

pytestmark = pytest.mark.db
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def registration_settings(settings: Settings, tiny: TinyModels, port: int) -> Settings:
    return settings.model_copy(
        update={
            "sd1_base_model": str(tiny.base),
            "sd1_controlnet": str(tiny.controlnet),
            "reference_px": 64,
            "reference_steps": 2,
            "spec_steps": 2,
            "watch_poll_seconds": 0.05,
            "lookalike_min_catalog": 3,
            # The service checks scheme and host from configuration: this test's server is the host.
            "registration_allowed_hosts": ["127.0.0.1"],
            "registration_allowed_ports": [port],
        }
    )


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with https_server() as running:
        yield running


def worker_policy(server: LocalServer) -> FetchPolicy:
    """The worker may reach exactly this test's loopback server (production refuses loopback)."""
    return FetchPolicy(
        allowed_hosts=("127.0.0.1",),
        allowed_ports=(server.port,),
        address_allowed=lambda a: is_public_address(a) or a == LOOPBACK,
        ssl_context=server.client_context,
    )


async def watch(client: FindLoraClient, job_id: str) -> list[pb.JobEvent]:
    return [event async for event in client.watch_job(job_id, timeout=120)]


def add_platform_prompts(url: str, texts: list[str]) -> None:
    with psycopg.connect(url) as conn:
        for i, text in enumerate(texts):
            conn.execute("INSERT INTO prompts (lora_id, local_id, text) VALUES (NULL, %s, %s)", (i, text))


async def test_tiny_lora_registers_end_to_end_without_touching_other_scores(
    settings: Settings, tmp_path: Path, tiny_models: TinyModels, tiny_lora: Path, server: LocalServer
) -> None:
    settings = registration_settings(settings, tiny_models, server.port)
    add_platform_prompts(str(settings.database_url), ["a lighthouse at dusk", "a bowl of fruit"])
    server.routes["/files/inkwash.safetensors"] = body(tiny_lora.read_bytes())
    server.routes["/files/not-a-lora.safetensors"] = body(b"abc")
    async with (
        served_catalog(settings, tmp_path, n_loras=6, n_samples=4) as served,
        served.client(Role.MODERATE, timeout=30) as client,
    ):
        query = [QueryImage(served.reference_bytes("style-02"), "q.png")]
        before = {m.slug: m.style_distance for m in (await client.search(query, top_k=10)).matches}

        metadata = pb.LoraMetadata(name="Inkwash", base_model="sd1", trigger_words=["inkwash"])
        url = server.url("/files/inkwash.safetensors?sig=secret")
        job_id = await client.register_lora(url, metadata, requested_by="mod#1")
        watcher = asyncio.create_task(watch(client, job_id))
        await run_worker(settings, wait=False, policy=worker_policy(server))
        events = await asyncio.wait_for(watcher, 60)

        final = events[-1]
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.message
        assert (final.slug, final.progress) == ("inkwash", pytest.approx(1.0))
        assert final.lora_id > 0
        assert "4 references (0 dropped by cleansing), 2 spec images" in final.message
        assert events[0].state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
        # Polling may coalesce fast steps; what is seen comes in pipeline order and ends indexed.
        order = ["fetch", "validate", "generate", "embed", "index"]
        seen = [order.index(e.step) for e in events if e.step]
        assert seen == sorted(seen)
        assert final.step == "index"
        progress = [e.progress for e in events]
        assert progress == sorted(progress)

        after = await client.search(query, top_k=10)
        distances = {m.slug: m.style_distance for m in after.matches}
        assert "inkwash" in distances
        assert {k: v for k, v in distances.items() if k != "inkwash"} == before  # nobody else moved

        # The new LoRA's own reference finds it first.
        with psycopg.connect(str(settings.database_url)) as conn:
            key = conn.execute(
                "SELECT blob_key FROM reference_images WHERE lora_id = %s ORDER BY sample_id LIMIT 1",
                (final.lora_id,),
            ).fetchone()
            assert key is not None
            row = conn.execute(
                "SELECT sha256, source_url, trigger_words, created_by FROM loras WHERE id = %s",
                (final.lora_id,),
            ).fetchone()
            spec = conn.execute(
                "SELECT p.local_id, s.blob_key, s.image_feature IS NULL FROM spec_points s"
                " JOIN prompts p ON p.id = s.prompt_id WHERE s.lora_id = %s ORDER BY 1",
                (final.lora_id,),
            ).fetchall()
            audit = conn.execute(
                "SELECT actor, subject, client FROM audit_log WHERE action = 'register_lora'"
            ).fetchall()
        own = (settings.blob_dir / key[0]).read_bytes()
        top = (await client.search([QueryImage(own, "own.png")], top_k=1)).matches[0]
        assert top.slug == "inkwash"
        assert row is not None
        assert row[1] == f"https://127.0.0.1:{server.port}/files/inkwash.safetensors"  # no signature kept
        assert (row[2], row[3]) == (["inkwash"], "mod#1")
        assert [(r[0], r[2]) for r in spec] == [(0, True), (1, True)]
        assert all((settings.blob_dir / r[1]).is_file() for r in spec)
        assert audit == [("mod#1", "inkwash", "test-moderate")]  # the person the bot names, its client

        # The same file again is a duplicate; a non-LoRA fails; neither leaves a LoRA behind.
        again = await client.register_lora(url, pb.LoraMetadata(name="Inkwash copy"), requested_by="mod#2")
        bad = await client.register_lora(
            server.url("/files/not-a-lora.safetensors"),
            pb.LoraMetadata(name="Broken"),
            requested_by="mod#2",
        )
        await run_worker(settings, wait=False, policy=worker_policy(server))
        dup_events, bad_events = await watch(client, again), await watch(client, bad)
        assert dup_events[-1].state == pb.JOB_STATE_FAILED
        assert "already registered as 'inkwash'" in dup_events[-1].message
        assert bad_events[-1].state == pb.JOB_STATE_FAILED
        assert "too short to be a safetensors file" in bad_events[-1].message
        slugs = {m.slug for m in (await client.search(query, top_k=20)).matches}
        assert slugs == set(before) | {"inkwash"}

        # Refused at the RPC already: plain http, a foreign host, a taken slug.
        for source, code in [
            ("http://127.0.0.1/x.safetensors", grpc.StatusCode.INVALID_ARGUMENT),
            ("https://example.org/x.safetensors", grpc.StatusCode.INVALID_ARGUMENT),
            (url, grpc.StatusCode.ALREADY_EXISTS),
        ]:
            with pytest.raises(ServiceCallError) as refused:
                await client.register_lora(source, pb.LoraMetadata(name="Inkwash"), requested_by="mod#3")
            assert refused.value.code == code


async def test_lookalike_threshold_comes_from_the_catalog(settings: Settings, tmp_path: Path) -> None:
    from db import registration
    from inference_service.registration.pipeline import RegistrationPipeline
    from inference_service.runtime import open_runtime

    settings = settings.model_copy(update={"lookalike_min_catalog": 3, "lookalike_quantile": 0.05})
    async with served_catalog(settings, tmp_path, n_loras=8, n_samples=3):
        runtime = await open_runtime(settings)
        try:
            pipeline = RegistrationPipeline(
                settings,
                runtime.db,
                runtime.blobs,
                runtime.embedder,
                generators=lambda _: None,  # type: ignore[arg-type,return-value]
            )
            distances = await runtime.db.run(registration.nearest_neighbour_distances, 500)
            assert len(distances) == 8
            with psycopg.connect(str(settings.database_url)) as conn:
                from pgvector.psycopg import register_vector

                register_vector(conn)
                rows = conn.execute(
                    "SELECT l.slug, s.centroid FROM lora_style_summary s JOIN loras l ON l.id = s.lora_id"
                ).fetchall()
            slugs = [r[0] for r in rows]
            centroids = np.stack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows])
            # The most isolated LoRA: a near-copy of it is a lookalike of it alone (the threshold is
            # about the closest pair's distance, so a member of that pair would find its partner too).
            gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=2) + np.eye(len(rows)) * 9
            alone = int(gaps.min(axis=1).argmax())
            centroid = centroids[alone]
            near, threshold = await pipeline.lookalikes(centroid + 1e-4)
            assert threshold == pytest.approx(float(np.quantile(distances, 0.05)))
            assert [n.slug for n in near] == [slugs[alone]]
            assert near[0].distance < threshold
            far, _ = await pipeline.lookalikes(-centroid)
            assert far == []
            few = settings.model_copy(update={"lookalike_min_catalog": 50})
            pipeline.settings = few
            assert await pipeline.lookalikes(centroid) == ([], None)  # too small a catalog to judge
        finally:
            await runtime.close()
