"""Async client of the inference service: deadlines on every call, retries only on UNAVAILABLE."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# gRPC retries transparently, with backoff, only when the service could not be reached.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "findlora.v1.FindLora"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


class ServiceError(Exception):
    """A call to the service failed; `message` is written for the person who asked."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ServiceUnreachable(ServiceError):
    pass


class ServiceTimeout(ServiceError):
    pass


@dataclass(frozen=True)
class QueryImage:
    data: bytes
    filename: str = ""
    content_type: str = ""


class FindLoraClient:
    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.service_config", SERVICE_CONFIG),
                ("grpc.enable_retries", 1),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = pb_grpc.FindLoraStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> FindLoraClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _translate(self, error: grpc.aio.AioRpcError) -> ServiceError:
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServiceUnreachable(
                f"could not reach the findlora service at {self.address} "
                f"({error.details() or 'unavailable'})",
                code,
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServiceTimeout(f"the findlora service at {self.address} did not answer in time", code)
        return ServiceError(error.details() or code.name, code)

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable, request: object, timeout: float | None
    ) -> pb.SearchResponse:
        try:
            response: pb.SearchResponse = await method(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        return response

    async def search(
        self,
        images: Sequence[QueryImage],
        *,
        top_k: int = 10,
        base_model: str = "",
        allow_nsfw: bool = False,
        prompt: str | None = None,
        requested_by: str = "",
        exact: bool = False,
        timeout: float | None = None,
    ) -> pb.SearchResponse:
        request = pb.SearchRequest(
            images=[pb.Image(data=i.data, filename=i.filename, content_type=i.content_type) for i in images],
            top_k=top_k,
            base_model=base_model,
            allow_nsfw=allow_nsfw,
            requested_by=requested_by,
            exact=exact,
        )
        if prompt is not None:
            request.prompt = prompt
        return await self._call(self._stub.Search, request, timeout)

    async def get_page(
        self,
        search_id: str,
        offset: int,
        limit: int,
        *,
        allow_nsfw: bool = False,
        timeout: float | None = None,
    ) -> pb.SearchResponse:
        request = pb.GetPageRequest(search_id=search_id, offset=offset, limit=limit, allow_nsfw=allow_nsfw)
        return await self._call(self._stub.GetPage, request, timeout)

    async def health(self, timeout: float = 5.0) -> str:
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
