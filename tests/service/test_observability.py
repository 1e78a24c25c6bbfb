"""Prometheus metrics per RPC and OpenTelemetry spans for gRPC calls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import torch
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from db.clients import Role
from findlora.metrics_http import parse_listen, start_metrics_server
from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from inference_service.config import Settings
from inference_service.observability import enable_tracing
from inference_service.server import RunningService, start_service
from inference_service.servicer import rpc
from protos import findlora_pb2 as pb
from tests.helpers.service import issue_token, service_client

pytestmark = pytest.mark.db


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_rpc_metrics_count_outcomes_and_are_scraped(client: FindLoraClient, catalog_dir: Path) -> None:
    ok_before = sample("findlora_rpc_requests_total", rpc="Search", code="OK")
    bad_before = sample("findlora_rpc_requests_total", rpc="Search", code="INVALID_ARGUMENT")
    timed_before = sample("findlora_rpc_latency_seconds_count", rpc="Search")
    await client.search([QueryImage((catalog_dir / "samples" / "s00.png").read_bytes())], top_k=3)
    with pytest.raises(ServiceCallError):
        await client.search([QueryImage(b"not an image")])
    assert sample("findlora_rpc_requests_total", rpc="Search", code="OK") == ok_before + 1
    assert sample("findlora_rpc_requests_total", rpc="Search", code="INVALID_ARGUMENT") == bad_before + 1
    assert sample("findlora_rpc_latency_seconds_count", rpc="Search") == timed_before + 2

    port = start_metrics_server("127.0.0.1:0")
    async with httpx.AsyncClient() as http:
        page = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    assert 'findlora_rpc_requests_total{code="OK",rpc="Search"}' in page


async def test_watch_job_streams_are_counted_by_outcome(empty_service: RunningService) -> None:
    """WatchJob is a stream, outside @rpc: its outcomes and life were missing from the metrics."""
    token = await issue_token(empty_service, Role.MODERATE)
    codes = ("NOT_FOUND", "INVALID_ARGUMENT")
    before = {code: sample("findlora_rpc_requests_total", rpc="WatchJob", code=code) for code in codes}
    observed = sample("findlora_rpc_latency_seconds_count", rpc="WatchJob")
    async with service_client(empty_service, token) as client:
        for job_id in (str(uuid.uuid4()), "not-a-job-id"):
            with pytest.raises(ServiceCallError):
                async for _ in client.watch_job(job_id):
                    pass
    after = {code: sample("findlora_rpc_requests_total", rpc="WatchJob", code=code) for code in codes}
    assert after == {code: before[code] + 1 for code in codes}
    assert sample("findlora_rpc_latency_seconds_count", rpc="WatchJob") == observed + 2


async def test_a_cancelled_rpc_is_counted_as_cancelled() -> None:
    class Servicer:
        @rpc
        async def Cancelled(self, request: object, context: object) -> object:
            raise asyncio.CancelledError  # what a client's deadline or hang-up does to the handler

    ok_before = sample("findlora_rpc_requests_total", rpc="Cancelled", code="OK")
    cancelled_before = sample("findlora_rpc_requests_total", rpc="Cancelled", code="CANCELLED")
    with pytest.raises(asyncio.CancelledError):
        await Servicer().Cancelled(pb.GetPageRequest(), None)
    assert sample("findlora_rpc_requests_total", rpc="Cancelled", code="OK") == ok_before
    assert sample("findlora_rpc_requests_total", rpc="Cancelled", code="CANCELLED") == cancelled_before + 1


async def test_an_accelerator_out_of_memory_is_busy_not_internal() -> None:
    """A batch too large for the GPU memory free now: each of its requests may succeed alone or
    later, so the callers are told to retry (RESOURCE_EXHAUSTED), not that the service broke."""

    class Aborted(Exception):
        pass

    class Context:
        code: grpc.StatusCode | None = None

        async def abort(self, code: grpc.StatusCode, message: str, trailing_metadata: object) -> None:
            self.code = code
            raise Aborted(message)

    class Servicer:
        @rpc
        async def OutOfMemory(self, request: object, context: object) -> object:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    context = Context()
    with pytest.raises(Aborted, match="GPU memory"):
        await Servicer().OutOfMemory(pb.GetPageRequest(), context)
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError, match="host:port"):
        parse_listen("9464")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace._TRACER_PROVIDER = None  # tests may install their own provider once more
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    yield exporter
    GrpcAioInstrumentorServer().uninstrument()  # type: ignore[no-untyped-call]


async def test_tracing_records_a_span_per_rpc(settings: Settings, spans: InMemorySpanExporter) -> None:
    assert enable_tracing()
    service = await start_service(settings, "127.0.0.1:0")
    try:
        async with service_client(service, await issue_token(service, Role.SEARCH)) as client:
            with pytest.raises(ServiceCallError) as info:
                await client.search([QueryImage(b"")])
    finally:
        await service.stop(0.5)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    names = [span.name for span in spans.get_finished_spans()]
    assert "/findlora.v1.FindLora/Search" in names
