"""The inference service process: wires database, models and servicer into an aio gRPC server."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from procrastinate import App

from db.registration import RegistrationStore
from inference_service.config import Settings
from inference_service.decoding import DecodePool
from inference_service.moderation import Moderation
from inference_service.observability import enable_tracing
from inference_service.registration.jobs import Registrations, make_queue_app
from inference_service.runtime import Runtime, open_runtime
from inference_service.search import SearchEngine
from inference_service.servicer import FindLoraServicer
from protos import findlora_pb2, findlora_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE_NAME = findlora_pb2.DESCRIPTOR.services_by_name["FindLora"].full_name


@dataclass
class RunningService:
    server: grpc.aio.Server
    port: int
    runtime: Runtime
    health: health.aio.HealthServicer
    engine: SearchEngine | None = None
    queue: App | None = None
    decoder: DecodePool | None = None

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.decoder is not None:
            self.decoder.close()
        if self.engine is not None:
            await self.engine.aclose()
        if self.queue is not None:
            await self.queue.close_async()
        await self.runtime.close()


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_grpc_message_bytes),
        ("grpc.max_send_message_length", settings.max_grpc_message_bytes),
    ]


async def start_service(settings: Settings, listen: str | None = None) -> RunningService:
    """Migrate, load the models and start serving; `listen` may use port 0 (tests, demo)."""
    runtime = await open_runtime(settings)
    gmi = None
    if runtime.gmi is not None:
        from inference_service.gmi import GmiBranch

        gmi = GmiBranch(runtime.repo, runtime.gmi, settings.rkme_gamma)
    engine = SearchEngine(runtime.repo, runtime.blobs, runtime.embedder, settings, gmi)

    # Registration jobs go to the Postgres queue; workers (findlora serve worker) run them.
    queue = make_queue_app(runtime.url)
    await queue.open_async()
    registrations = Registrations(RegistrationStore(runtime.repo.pool), queue, settings)

    server = grpc.aio.server(
        options=grpc_options(settings), maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None
    )
    decoder = DecodePool.from_settings(settings)
    findlora_pb2_grpc.add_FindLoraServicer_to_server(  # type: ignore[no-untyped-call]
        FindLoraServicer(
            engine, Moderation(runtime.repo, runtime.embedder, settings), settings, registrations, decoder
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(listen or settings.listen)
    if port == 0:
        decoder.close()
        await queue.close_async()
        await runtime.close()
        raise OSError(f"could not listen on {listen or settings.listen}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "service_started",
        port=port,
        encoder=runtime.embedder.label,
        device=settings.device,
        dynamic_batching=settings.dynamic_batching,
        batch_max_size=settings.batch_max_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        decode_workers=settings.decode_workers,
    )
    return RunningService(server, port, runtime, health_servicer, engine, queue, decoder)


async def serve(settings: Settings, listen: str | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (health NOT_SERVING, drain in-flight RPCs)."""
    if settings.otel_enabled:
        enable_tracing()
    service = await start_service(settings, listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("service_stopping", grace_s=settings.grace_seconds)
    await service.stop(settings.grace_seconds)
    log.info("service_stopped")
