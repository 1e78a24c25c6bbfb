"""Bounded work per request and per process, through the real service: image counts and bytes
checked before any decode, decoding in a bounded pool (memory, a responsive event loop), a token
bucket per requester, and a statement_timeout on the search queries."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
import pytest
from PIL import Image

from db.clients import Role
from findlora_client import QueryImage, ServiceCallError, ServiceTimeout
from findlora_client.protocol import REASON_TRAILER, RETRY_AFTER_TRAILER, Reason
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import RunningService, start_service
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token, service_client

pytestmark = pytest.mark.db


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def small_catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "catalog", n_loras=4, n_samples=3)


@asynccontextmanager
async def running(settings: Settings, catalog: Path, **overrides: Any) -> AsyncIterator[RunningService]:
    configured = settings.model_copy(update=overrides)
    runtime = await open_runtime(configured)
    await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
    await runtime.close()
    service = await start_service(configured, "127.0.0.1:0")
    try:
        yield service
    finally:
        await service.stop(0.5)


def sample(catalog: Path) -> QueryImage:
    return QueryImage((catalog / "samples" / "s00.png").read_bytes(), "s00.png")


async def test_too_many_images_are_refused_before_any_decode(settings: Settings, small_catalog: Path) -> None:
    # The measured attack: 12 blank 1-bit 7000x5700 PNGs of 4.9 KB each; and 100 flat 16 MP PNGs.
    one_bit = png(Image.new("1", (7000, 5700)))
    flat = png(Image.new("RGB", (4000, 4000), (120, 40, 200)))
    async with (
        running(settings, small_catalog) as service,
        service_client(service, await issue_token(service, Role.SEARCH), timeout=20) as client,
    ):
        assert service.decoder is not None
        for data, count in ((one_bit, 12), (flat, 100)):
            with pytest.raises(ServiceCallError) as info:
                await client.search([QueryImage(data, f"{i}.png") for i in range(count)])
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert f"send 1 to 4 images of one style (this request has {count})" == info.value.message
        with pytest.raises(ServiceCallError) as info:
            await client.flag_lookalike("style-00", [QueryImage(flat)] * 5, reporter="artist")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.message == "send 1 to 4 images of your artwork (this request has 5)"
        assert service.decoder.stats.submitted == 0  # nothing reached a decode worker
        assert await client.health() == "SERVING"


async def test_request_bytes_are_capped_before_any_decode(settings: Settings, small_catalog: Path) -> None:
    data = (small_catalog / "samples" / "s00.png").read_bytes()
    async with (
        running(settings, small_catalog, max_request_image_bytes=3 * len(data) - 1) as service,
        service_client(service, await issue_token(service, Role.SEARCH), timeout=20) as client,
    ):
        assert service.decoder is not None
        assert (await client.search([QueryImage(data)] * 2, top_k=2)).matches
        submitted = service.decoder.stats.submitted
        with pytest.raises(ServiceCallError) as info:
            await client.search([QueryImage(data)] * 3)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "the images add up to" in info.value.message
        assert "the limit per request is" in info.value.message
        assert service.decoder.stats.submitted == submitted


class RssSampler:
    """Peak resident memory of this process (which hosts the service), sampled from a thread so
    that a blocked event loop cannot hide a peak."""

    def __init__(self, interval: float = 0.01) -> None:
        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


async def test_twenty_concurrent_16_megapixel_searches_stay_bounded(
    settings: Settings, small_catalog: Path
) -> None:
    """80 flat 4000x4000 PNGs (56 KB each, 64 MB each decoded): a small request, a large decode."""
    images = [
        QueryImage(png(Image.new("RGB", (4000, 4000), (40 * i, 120, 200 - 40 * i))), f"big{i}.png")
        for i in range(4)
    ]
    async with (
        running(settings, small_catalog) as service,
        service_client(service, await issue_token(service, Role.SEARCH), timeout=180) as client,
    ):
        await client.search([sample(small_catalog)], top_k=2)  # warm: models, pools, batcher
        health_latencies: list[float] = []
        health_failures: list[str] = []
        done = asyncio.Event()

        async def watch_health() -> None:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    status = await client.health(timeout=1.0)
                    if status != "SERVING":
                        health_failures.append(status)
                except ServiceCallError as exc:
                    health_failures.append(repr(exc))
                health_latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

        async def search(n: int) -> pb.SearchResponse | ServiceCallError:
            try:
                return await client.search(images, top_k=2, requested_by=f"user-{n}")
            except ServiceCallError as exc:
                return exc

        with RssSampler() as rss:
            watcher = asyncio.create_task(watch_health())
            outcomes = await asyncio.gather(*(search(n) for n in range(20)))
            done.set()
            await watcher
        answered = [o for o in outcomes if isinstance(o, pb.SearchResponse)]
        refused = [o for o in outcomes if isinstance(o, ServiceCallError)]
        for error in refused:
            assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert error.reason == Reason.BUSY
            assert "try again" in error.message
        assert answered, "the first requests fit the decode queue"
        assert all(len(response.matches) == 2 for response in answered)
        assert rss.growth_mb < 1536, f"RSS grew {rss.growth_mb:.0f} MB"
        assert health_failures == []
        assert len(health_latencies) > 5
        assert max(health_latencies) < 1.0
        print(
            f"bounds: {len(answered)} answered, {len(refused)} refused, rss +{rss.growth_mb:.0f} MB, "
            f"health max {max(health_latencies) * 1000:.0f} ms over {len(health_latencies)} checks"
        )


async def test_token_bucket_refuses_past_the_burst_with_a_retry_hint(
    settings: Settings, small_catalog: Path
) -> None:
    data = sample(small_catalog).data
    request = pb.SearchRequest(images=[pb.Image(data=data)], top_k=2, requested_by="alice")
    async with (
        running(settings, small_catalog, rate_limit_per_s=1.0, rate_limit_burst=3) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = pb_grpc.FindLoraStub(channel)  # type: ignore[no-untyped-call]
        token = await issue_token(service, Role.SEARCH)
        auth = (("authorization", f"Bearer {token}"),)

        async def call(req: pb.SearchRequest) -> grpc.aio.AioRpcError | None:
            try:
                await stub.Search(req, timeout=30, metadata=auth)
            except grpc.aio.AioRpcError as error:
                return error
            return None

        # burst + 1 at once: one is refused, with the wait in the message and in trailing metadata
        outcomes = await asyncio.gather(*(call(request) for _ in range(4)))
        errors = [o for o in outcomes if o is not None]
        assert len(errors) == 1
        (error,) = errors
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "too many requests; try again in 1 s"
        trailers = dict(error.trailing_metadata() or ())
        assert (trailers[RETRY_AFTER_TRAILER], trailers[REASON_TRAILER]) == ("1", "RATE_LIMITED")
        # another requester has a bucket of its own
        assert await call(pb.SearchRequest(images=[pb.Image(data=data)], top_k=2, requested_by="bob")) is None
        await asyncio.sleep(1.0)  # the hint was right: a token is back
        assert await call(request) is None
        # no requested_by: the caller's address is the key
        anonymous = pb.SearchRequest(images=[pb.Image(data=data)], top_k=2)
        outcomes = await asyncio.gather(*(call(anonymous) for _ in range(4)))
        assert sum(o is not None for o in outcomes) == 1
        # the client reads the reason and the hint
        async with service_client(service, token) as client:
            query = [sample(small_catalog)]
            results = await asyncio.gather(
                *(client.search(query, top_k=2, requested_by="carol") for _ in range(4)),
                return_exceptions=True,
            )
        refused = [r for r in results if isinstance(r, ServiceCallError)]
        assert [(r.reason, r.retry_after_s) for r in refused] == [(Reason.RATE_LIMITED, 1)]


async def test_search_query_past_the_statement_timeout_is_a_clear_error(
    settings: Settings, small_catalog: Path, db_url: str
) -> None:
    query = [sample(small_catalog)]
    async with (
        running(settings, small_catalog, search_statement_timeout_ms=300) as service,
        service_client(service, await issue_token(service, Role.SEARCH), timeout=20) as client,
    ):
        assert (await client.search(query, top_k=2)).matches
        # The test's own connection holds the table the exact scoring reads: the search's query
        # waits on the lock until statement_timeout cancels it.
        async with await psycopg.AsyncConnection.connect(db_url) as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE reference_images IN ACCESS EXCLUSIVE MODE")
            started = time.perf_counter()
            with pytest.raises(ServiceTimeout) as info:
                await client.search(query, top_k=2)
            waited = time.perf_counter() - started
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "the search took longer than the catalog database allows" in info.value.message
        assert waited < 10  # cancelled by the database, not by the client's 20 s deadline
        assert (await client.search(query, top_k=2)).matches  # the pool and its connection recover
