"""Clients spread calls over every address their target resolves to (the replicas behind a
headless Service), where gRPC's default would send them all to the first."""

from __future__ import annotations

from collections import Counter

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from findlora_client import FindLoraClient


class CountingHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, name: str, calls: Counter[str]) -> None:
        self.name, self.calls = name, calls

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: object
    ) -> health_pb2.HealthCheckResponse:
        self.calls[self.name] += 1
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def test_calls_go_round_robin_over_the_replicas() -> None:
    calls: Counter[str] = Counter()
    servers, ports = [], []
    for name in ("a", "b"):
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(CountingHealth(name, calls), server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
        async with FindLoraClient(target, timeout=5) as client:
            for _ in range(10):
                assert await client.health() == "SERVING"
        assert calls["a"] >= 3
        assert calls["b"] >= 3
    finally:
        for server in servers:
            await server.stop(0)
