"""The inference service process: wires database, models and servicer into an aio gRPC server."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from procrastinate import App

from inference_service.auth import AuthInterceptor
from inference_service.config import Settings
from inference_service.decoding import DecodePool
from inference_service.errors import FailedPrecondition
from inference_service.local_client import ensure_local_client
from inference_service.moderation import Moderation
from inference_service.observability import enable_tracing
from inference_service.pseudonyms import feedback_key
from inference_service.readiness import DatabaseReadiness
from inference_service.registration.jobs import Registrations, make_queue_app
from inference_service.retention import SearchPurge
from inference_service.runtime import Runtime, open_runtime
from inference_service.search.engine import SearchEngine
from inference_service.search.memory_index import CentroidIndex, IndexConfig
from inference_service.servicer import FindLoraServicer
from inference_service.tls import server_credentials
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
    purge: SearchPurge | None = None  # deletes expired searches while the service runs
    decoder: DecodePool | None = None
    # The embedded database's `local` client token (None with DATABASE_URL): the demo calls with it.
    local_token: str | None = field(default=None, repr=False)
    # What start_service opened, closed in reverse order (purge, decoder, engine, queue, runtime).
    resources: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)  # in-flight RPCs finish before what they use is closed
        await self.resources.aclose()


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_grpc_message_bytes),
        ("grpc.max_send_message_length", settings.max_grpc_message_bytes),
    ]


async def start_service(settings: Settings, listen: str | None = None) -> RunningService:
    """Check (external) or migrate (embedded) the schema, load the models and start serving;
    `listen` may use port 0 (tests, demo)."""
    # A bad key or TLS setting stops us before any work.
    key = await asyncio.to_thread(feedback_key, settings)
    credentials = server_credentials(settings)
    # Each resource joins the stack once open: a later failure closes them all, in reverse order.
    async with AsyncExitStack() as stack:
        runtime = await open_runtime(settings)
        stack.push_async_callback(runtime.close)
        local_token = None
        if settings.database_url is None:
            async with runtime.db.connection() as conn:
                local_token = await ensure_local_client(conn, settings.data_dir)
        # Registration jobs go to the Postgres queue; workers (findlora serve worker) run them.
        queue = make_queue_app(runtime.url)
        await queue.open_async()
        stack.push_async_callback(queue.close_async)
        registrations = Registrations(runtime.db, queue, settings)
        gmi = None
        if runtime.gmi is not None:
            from db.spec_index import ensure_spec_index_async
            from inference_service.gmi import GmiBranch

            # The catalog's CLIP dimension is known once a spec is stored: index its points.
            await ensure_spec_index_async(runtime.url)
            gmi = GmiBranch(
                runtime.db, runtime.gmi, settings.rkme_gamma, exact_below=settings.gmi_exact_below
            )
        centroid_index = None
        if settings.centroid_index == "memory":  # built in the background; pgvector serves until then
            centroid_index = CentroidIndex(runtime.db, IndexConfig.from_settings(settings))
            centroid_index.start()
            stack.push_async_callback(centroid_index.aclose)
        engine = SearchEngine(runtime.db, runtime.blobs, runtime.encoders, settings, gmi, centroid_index)
        stack.push_async_callback(engine.aclose)
        decoder = DecodePool.from_settings(settings)
        stack.callback(decoder.close)
        server = grpc.aio.server(
            options=grpc_options(settings),
            interceptors=[AuthInterceptor(runtime.db)],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
        )
        findlora_pb2_grpc.add_FindLoraServicer_to_server(  # type: ignore[no-untyped-call]
            FindLoraServicer(
                engine,
                Moderation(runtime.db, runtime.encoders, settings),
                settings,
                registrations,
                decoder,
                feedback_key=key,
            ),
            server,
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable_server_reflection((SERVICE_NAME, health_name, reflection.SERVICE_NAME), server)
        address = listen or settings.listen
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError:  # grpc raises where it used to return port 0
            port = 0
        if port == 0:
            raise FailedPrecondition(
                f"cannot listen on {address}: the port is in use or the address is not HOST:PORT; "
                "choose another with --listen or FINDLORA_LISTEN"
            )
        await server.start()
        # Only for a failure below; RunningService.stop stops the server gracefully first.
        stack.push_async_callback(server.stop, None)
        purge = SearchPurge(runtime.db, settings.purge_interval_s)
        purge.start()
        stack.push_async_callback(purge.stop)
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        readiness = DatabaseReadiness(
            runtime.db, health_servicer, SERVICE_NAME, settings.readiness_interval_s
        )
        readiness.start()
        stack.push_async_callback(readiness.stop)
        log.info(
            "service_started",
            port=port,
            encoder=runtime.embedder.label,  # configured; the catalog's label may name another
            device=settings.device,
            dynamic_batching=settings.dynamic_batching,
            batch_max_size=settings.batch_max_size,
            batch_max_wait_ms=settings.batch_max_wait_ms,
            search_ttl_hours=settings.search_ttl_hours,
            purge_interval_s=settings.purge_interval_s,
            tls=credentials is not None,
            mutual_tls=settings.tls_client_ca is not None,
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
            decode_workers=settings.decode_workers,
        )
        owned = stack.pop_all()  # from here on, RunningService.stop closes them
        return RunningService(
            server, port, runtime, health_servicer, engine, queue, purge, decoder, local_token, owned
        )


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
