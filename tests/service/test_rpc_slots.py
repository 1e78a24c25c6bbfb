"""Callers that never send their request message hold none of the server's RPC slots for long:
a refused call (no token) ends at once, a health check without its message is dropped after
HEALTH_READ_S, and health's Watch (a stream that stays open by design) is not served. Before,
64 such calls, from anyone, failed every health probe and every search until they left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from db.clients import Role
from findlora_client import FindLoraClient
from inference_service import auth
from inference_service.config import Settings
from inference_service.server import start_service
from protos import findlora_pb2 as pb
from tests.helpers.service import issue_token

pytestmark = pytest.mark.db
SLOTS = 4


async def silent() -> AsyncIterator[bytes]:
    """A request stream whose message never comes (the call stays open until cancelled)."""
    await asyncio.Event().wait()
    yield b""  # never reached


async def test_calls_without_their_request_hold_no_rpc_slot(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "HEALTH_READ_S", 0.5)
    service = await start_service(settings.model_copy(update={"max_concurrent_rpcs": SLOTS}), "127.0.0.1:0")
    address = f"127.0.0.1:{service.port}"
    try:
        token = await issue_token(service, Role.SEARCH, "slots")
        async with grpc.aio.insecure_channel(address) as attacker:
            no_token = attacker.stream_unary("/findlora.v1.FindLora/Search")
            refused = [no_token(silent()) for _ in range(SLOTS)]
            codes = await asyncio.wait_for(asyncio.gather(*(call.code() for call in refused)), 5)
            assert codes == [grpc.StatusCode.UNAUTHENTICATED] * SLOTS  # at once, message or not

            check = attacker.stream_unary(auth.HEALTH_CHECK)
            dropped = [check(silent()) for _ in range(SLOTS)]
            codes = await asyncio.wait_for(asyncio.gather(*(call.code() for call in dropped)), 5)
            assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * SLOTS

            watch = attacker.unary_stream(
                auth.HEALTH_PREFIX + "Watch",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            watches = [watch(health_pb2.HealthCheckRequest(service="")) for _ in range(SLOTS)]
            codes = await asyncio.wait_for(asyncio.gather(*(call.code() for call in watches)), 5)
            assert codes == [grpc.StatusCode.UNIMPLEMENTED] * SLOTS

            # Every slot is free again: a probe and a client's call are answered.
            async with FindLoraClient(address) as anonymous:
                assert await anonymous.health() == "SERVING"
            async with FindLoraClient(address, token=token) as client:
                status = await client.service_status()
                assert isinstance(status, pb.ServiceStatusResponse)
    finally:
        await service.stop(0.5)
