"""Search, paging, health, reflection and errors through the real gRPC service."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from db.clients import Role
from findlora_client import FindLoraClient, QueryImage, Reason, ServiceCallError, ServiceUnreachable
from inference_service.readiness import DatabaseReadiness
from inference_service.server import SERVICE_NAME, RunningService
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc
from tests.helpers.service import issue_token, service_client

pytestmark = pytest.mark.db


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def test_reference_image_finds_its_own_lora_first(client: FindLoraClient, catalog_dir: Path) -> None:
    """Acceptance: 20 LoRAs x 10 samples; a reference image ranks its LoRA first, and that LoRA's
    nearest sample transfer is the very same image (distance ~0)."""
    for slug, sample in [("style-07", "s03"), ("style-00", "s09"), ("style-19", "s00")]:
        data = (catalog_dir / "loras" / slug / "references" / f"{sample}.png").read_bytes()
        response = await client.search([QueryImage(data, f"{sample}.png")], top_k=5)
        top = response.matches[0]
        assert (top.rank, top.slug) == (1, slug)
        assert top.transfers[0].sample_id == sample
        # ~0: the stored reference is the image in half precision (a few 1e-4 away).
        assert top.transfers[0].distance == pytest.approx(0.0, abs=1e-3)
        assert top.style_distance == pytest.approx(top.score)
        assert [m.rank for m in response.matches] == [1, 2, 3, 4, 5]
        assert [m.score for m in response.matches] == sorted(m.score for m in response.matches)


async def test_matches_carry_metadata_and_thumbnails(client: FindLoraClient, catalog_dir: Path) -> None:
    data = (catalog_dir / "loras" / "style-03" / "references" / "s01.png").read_bytes()
    response = await client.search([QueryImage(data)], top_k=3, prompt="a red house")
    top = response.matches[0]
    assert top.name == "Style 3"
    assert top.url == "https://example.org/style-03"
    assert top.base_model == "sd1"
    assert response.pseudo_prompt == "a red house"
    assert top.suggested_prompt == "a red house, trig3, <lora:style-03:0.8>"
    assert not top.HasField("rkme_score")
    assert len(top.transfers) == 3
    for transfer in top.transfers:
        thumb = Image.open(io.BytesIO(transfer.thumbnail))
        assert thumb.format == "WEBP"
        assert max(thumb.size) <= 256
        assert transfer.mime_type == "image/webp"
    assert response.total == 20
    assert response.expires_at.seconds > 0


async def test_a_missing_thumbnail_leaves_that_transfer_without_a_picture_not_the_search_failed(
    client: FindLoraClient, catalog_dir: Path, service: RunningService
) -> None:
    data = (catalog_dir / "loras" / "style-03" / "references" / "s01.png").read_bytes()
    first = (await client.search([QueryImage(data)], top_k=1)).matches[0]
    async with service.runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT thumb_key FROM reference_images WHERE lora_id = %s AND sample_id = %s",
            (first.lora_id, first.transfers[0].sample_id),
        )
        row = await cur.fetchone()
    assert row is not None
    service.runtime.blobs.path(str(row[0])).unlink()  # a partial restore, an unshared volume

    again = (await client.search([QueryImage(data)], top_k=1)).matches[0]
    assert again.slug == first.slug
    assert [t.sample_id for t in again.transfers] == [t.sample_id for t in first.transfers]
    assert again.transfers[0].thumbnail == b""
    assert again.transfers[0].mime_type == ""
    assert all(t.thumbnail for t in again.transfers[1:])


async def test_paging_continues_the_stored_ranking(client: FindLoraClient, catalog_dir: Path) -> None:
    data = (catalog_dir / "loras" / "style-11" / "references" / "s05.png").read_bytes()
    first = await client.search([QueryImage(data)], top_k=5)
    full = await client.search([QueryImage(data)], top_k=15)
    second = await client.get_page(first.search_id, offset=5, limit=5)
    assert [m.rank for m in second.matches] == [6, 7, 8, 9, 10]
    assert [m.slug for m in second.matches] == [m.slug for m in full.matches[5:10]]
    tail = await client.get_page(first.search_id, offset=18, limit=5)
    assert [m.rank for m in tail.matches] == [19, 20]


async def test_multi_image_query_averages_style_distance(client: FindLoraClient, catalog_dir: Path) -> None:
    refs = catalog_dir / "loras" / "style-05" / "references"
    one = await client.search([QueryImage((refs / "s01.png").read_bytes())], top_k=20)
    two = await client.search(
        [QueryImage((refs / "s01.png").read_bytes()), QueryImage((refs / "s02.png").read_bytes())], top_k=20
    )
    other = await client.search([QueryImage((refs / "s02.png").read_bytes())], top_k=20)
    d1 = {m.slug: m.style_distance for m in one.matches}
    d2 = {m.slug: m.style_distance for m in other.matches}
    assert len(two.matches) == 20
    for match in two.matches:
        assert match.style_distance == pytest.approx((d1[match.slug] + d2[match.slug]) / 2, abs=1e-5)
    # The ranking is the order of those means (how much a second image helps is measured by
    # `bench quality`'s multi-image rows, not here).
    by_mean = sorted(d1, key=lambda slug: ((d1[slug] + d2[slug]) / 2, slug))
    assert [m.slug for m in two.matches][:5] == by_mean[:5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"this is not an image", "not a readable image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a readable image"),
        (png_bytes(Image.effect_noise((64, 64), 40).convert("RGB"))[:300], "corrupt or truncated"),
        (png_bytes(Image.new("1", (10000, 10000))), "megapixels"),
    ],
)
async def test_bad_images_are_invalid_argument(client: FindLoraClient, data: bytes, message: str) -> None:
    with pytest.raises(ServiceCallError) as info:
        await client.search([QueryImage(data, "upload.png")])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.reason == Reason.IMAGE_REJECTED
    assert message in info.value.message
    assert "upload.png" in info.value.message
    assert await client.health() == "SERVING"  # the service shrugs it off


async def test_bad_requests_are_invalid_argument(client: FindLoraClient, catalog_dir: Path) -> None:
    data = (catalog_dir / "samples" / "s00.png").read_bytes()
    for images, top_k in ([[], 5], [[QueryImage(data)] * 5, 5], [[QueryImage(data)], 999]):
        with pytest.raises(ServiceCallError) as info:
            await client.search(images, top_k=top_k)
        assert (info.value.code, info.value.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_ARGUMENT,
        )
    with pytest.raises(ServiceCallError) as info:
        await client.get_page("not-a-uuid", 0, 5)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ServiceCallError) as info:
        await client.get_page("00000000-0000-0000-0000-000000000000", 0, 5)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.reason == Reason.SEARCH_NOT_FOUND


async def test_expired_search_says_so(
    client: FindLoraClient, catalog_dir: Path, service: RunningService
) -> None:
    data = (catalog_dir / "samples" / "s00.png").read_bytes()
    response = await client.search([QueryImage(data)], top_k=3)
    async with service.runtime.db.pool.connection() as conn:
        await conn.execute("UPDATE searches SET expires_at = now() - interval '1 second'")
    with pytest.raises(ServiceCallError) as info:
        await client.get_page(response.search_id, 3, 3)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.reason == Reason.SEARCH_EXPIRED
    assert info.value.message == "this search has expired, run it again"


async def test_empty_catalog_is_failed_precondition(empty_service: RunningService) -> None:
    async with service_client(empty_service, await issue_token(empty_service, Role.SEARCH)) as client:
        with pytest.raises(ServiceCallError) as info:
            await client.search([QueryImage(png_bytes(Image.new("RGB", (32, 32))))])
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.reason == Reason.CATALOG_EMPTY
    assert info.value.message == "catalog is empty: import one with findlora catalog import"


async def test_health_reflection_and_registration_checks(empty_service: RunningService) -> None:
    bearer = (("authorization", f"Bearer {await issue_token(empty_service, Role.MODERATE)}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{empty_service.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "findlora.v1.FindLora"):  # health needs no token (probes)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=bearer
        )
        services = set()
        async for reply in replies:
            services |= {s.name for s in reply.list_services_response.service}
        assert {"findlora.v1.FindLora", "grpc.health.v1.Health"} <= services
        stub = pb_grpc.FindLoraStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RegisterLora(
                pb.RegisterLoraRequest(source_url="https://example.org/x.safetensors"),
                timeout=5,
                metadata=bearer,
            )
        # Every RPC is implemented now; a download host outside the allowlist is refused up front.
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "downloads from example.org are not allowed" in (info.value.details() or "")
        # A date protobuf itself cannot turn into a datetime (outside 0001-9999) is the caller's error.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FeedbackStats(
                pb.FeedbackStatsRequest(since=Timestamp(seconds=-(10**12))), timeout=5, metadata=bearer
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_graceful_stop_reports_not_serving(empty_service: RunningService) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{empty_service.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await empty_service.health.enter_graceful_shutdown()
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_database_down_is_unavailable(
    client: FindLoraClient, catalog_dir: Path, service: RunningService
) -> None:
    await service.runtime.db.pool.close()  # every connection gone, as when the database stops
    with pytest.raises(ServiceCallError) as info:
        await client.search([QueryImage((catalog_dir / "samples" / "s00.png").read_bytes())], timeout=10)
    assert not isinstance(info.value, ServiceUnreachable)  # the service answered: the database is down
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.reason == Reason.DATABASE_UNAVAILABLE
    assert info.value.message == "the catalog database is unavailable; try again"


async def test_readiness_follows_the_database_liveness_does_not(service: RunningService) -> None:
    """A replica that cannot reach the catalog database answers nothing but health: its
    readiness (the FindLora service's health) says so, so the load balancer sends it no traffic;
    the process itself (overall health, the liveness probe's) is fine."""
    readiness = DatabaseReadiness(service.runtime.db, service.health, SERVICE_NAME, interval_s=2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def status(name: str) -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            return int(reply.status)

        assert await readiness.check_once()
        assert await status(SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        pool = service.runtime.db.pool
        await pool.close()  # the database is gone
        assert not await readiness.check_once()
        assert await status(SERVICE_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await status("") == health_pb2.HealthCheckResponse.SERVING
        service.runtime.db.pool = type(pool)(pool.conninfo, open=False, kwargs=pool.kwargs)
        await service.runtime.db.pool.open()  # it is back
        assert await readiness.check_once()
        assert await status(SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
    # Running in the background, it is stopped by an event (never cancelled mid-check) and stops.
    looping = DatabaseReadiness(service.runtime.db, service.health, SERVICE_NAME, interval_s=0.05)
    looping.start()
    task = looping._task
    await asyncio.sleep(0.3)
    await asyncio.wait_for(looping.stop(), timeout=5)
    assert task is not None
    assert task.done()


async def test_unreachable_service_names_the_address() -> None:
    async with FindLoraClient("127.0.0.1:1", timeout=3) as client:
        with pytest.raises(
            ServiceUnreachable, match=r"could not reach the findlora service at 127\.0\.0\.1:1"
        ):
            await client.search([QueryImage(b"x")])
