"""Async client of the inference service: deadlines on every call, retries only on UNAVAILABLE,
the client's bearer token on every call (streams included), TLS or mutual TLS when configured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from findlora_client import timing
from findlora_client.errors import ServiceCallError, ServiceTimeout, ServiceUnreachable, TlsHandshakeFailed
from findlora_client.protocol import (
    DEFAULT_ADDRESS,
    MAX_MESSAGE_BYTES,
    REASON_TRAILER,
    RETRY_AFTER_TRAILER,
    Reason,
)
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc

Reply = TypeVar("Reply")

# gRPC retries transparently, with backoff, only when the service could not be reached. Calls go
# round-robin over every address the target resolves to (dns:/// of a headless Service lists the
# replicas), where gRPC's default would send them all to the first one.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
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
        ],
    }
)


@dataclass(frozen=True)
class QueryImage:
    data: bytes
    filename: str = ""
    content_type: str = ""


@dataclass(frozen=True)
class ClientTls:
    """PEM bytes: the CA that signed the service's certificate (None: the system's roots), and
    this client's certificate chain and key for mutual TLS."""

    ca: bytes | None = None
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def _images(images: Sequence[QueryImage]) -> list[pb.Image]:
    return [pb.Image(data=i.data, filename=i.filename, content_type=i.content_type) for i in images]


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size % 2**20 == 0 else f"{size / 2**20:.1f} MiB"


def _too_large(request: Message) -> ServiceCallError | None:
    """A request over the message cap, refused before sending: gRPC would refuse it in this
    process with RESOURCE_EXHAUSTED, which reads as "busy, retry" where no retry can succeed."""
    size = request.ByteSize()
    if size <= MAX_MESSAGE_BYTES:
        return None
    images = sum(len(image.data) for name in ("images", "artworks") for image in getattr(request, name, ()))
    what = (
        f"the images add up to {_mib(images)}"
        if images > MAX_MESSAGE_BYTES
        else f"the request is {_mib(size)}"
    )
    message = f"{what}; the service takes at most {_mib(MAX_MESSAGE_BYTES)} per request"
    return ServiceCallError(message, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT)


class FindLoraClient:
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 30.0,
        token: str | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        # Per-call metadata, not call credentials: gRPC sends those only over TLS, and loopback
        # deployments run plaintext.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.service_config", SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, tls.credentials(), options=options)
        self._stub = pb_grpc.FindLoraStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> FindLoraClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _translate(self, error: grpc.aio.AioRpcError) -> ServiceCallError:
        code = error.code()
        trailers = dict(error.trailing_metadata() or ())
        named = trailers.get(REASON_TRAILER)  # set by the service; gRPC's own errors have none
        reason = Reason.parse(named, code)
        details = error.details() or ""
        # An UNAVAILABLE with a reason is the service's answer (its database is down), not gRPC
        # failing to reach it: said as the service said it below.
        if code == grpc.StatusCode.UNAVAILABLE and not named:
            if "handshake" in details.lower():  # gRPC's words for a failed TLS handshake
                return TlsHandshakeFailed(
                    f"the TLS handshake with the findlora service at {self.address} failed: check that "
                    "FINDLORA_SERVICE_CA is the CA that signed its certificate (and FINDLORA_CLIENT_CERT "
                    f"and FINDLORA_CLIENT_KEY, if it asks for one) ({details})",
                    code,
                    reason,
                )
            return ServiceUnreachable(
                f"could not reach the findlora service at {self.address} ({details or 'unavailable'})",
                code,
                reason,
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            # The service's own timeouts (a database query limit) say why; the client's deadline does not.
            why = f": {details}" if details and details != "Deadline Exceeded" else ""
            message = f"the findlora service at {self.address} did not answer in time{why}"
            return ServiceTimeout(message, code, reason)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not named and "larger than max" in details:
            # gRPC's own size cap (this client's, or a service's lower one): not BUSY, as no retry
            # of the same request can pass.
            invalid = grpc.StatusCode.INVALID_ARGUMENT
            return ServiceCallError(f"too large for one call ({details})", invalid, Reason.INVALID_ARGUMENT)
        retry = str(trailers.get(RETRY_AFTER_TRAILER, ""))
        return ServiceCallError(details or code.name, code, reason, int(retry) if retry.isdigit() else None)

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
        request: Message,
        timeout: float | None,
        reply: type[Reply],
    ) -> Reply:
        if (refused := _too_large(request)) is not None:
            raise refused
        try:
            call = method(request, timeout=timeout or self.timeout, metadata=self._metadata)
            response: Reply = await call
            if timing.collecting():  # the caller asked for the service's per-stage timing
                name = type(request).__name__.removesuffix("Request")
                timing.record(name, await call.trailing_metadata() or ())
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
            images=_images(images),
            top_k=top_k,
            base_model=base_model,
            allow_nsfw=allow_nsfw,
            requested_by=requested_by,
            exact=exact,
        )
        if prompt is not None:
            request.prompt = prompt
        return await self._call(self._stub.Search, request, timeout, pb.SearchResponse)

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
        return await self._call(self._stub.GetPage, request, timeout, pb.SearchResponse)

    async def record_feedback(
        self, search_id: str, lora_id: int, *, up: bool, user: str, timeout: float | None = None
    ) -> bool:
        """True when this is the user's first vote on the result, False when it replaced one."""
        request = pb.RecordFeedbackRequest(
            search_id=search_id, lora_id=lora_id, vote=pb.VOTE_UP if up else pb.VOTE_DOWN, user=user
        )
        reply = await self._call(self._stub.RecordFeedback, request, timeout, pb.RecordFeedbackResponse)
        return bool(reply.counted)

    async def set_lora_status(
        self,
        lora: str,
        status: pb.LoraStatus,
        *,
        moderator: str,
        reason: str = "",
        timeout: float | None = None,
    ) -> pb.SetLoraStatusResponse:
        request = pb.SetLoraStatusRequest(lora=lora, status=status, moderator=moderator, reason=reason)
        return await self._call(self._stub.SetLoraStatus, request, timeout, pb.SetLoraStatusResponse)

    async def flag_lookalike(
        self,
        lora: str,
        artworks: Sequence[QueryImage],
        *,
        note: str = "",
        reporter: str,
        timeout: float | None = None,
    ) -> pb.Flag:
        request = pb.FlagLookalikeRequest(lora=lora, artworks=_images(artworks), note=note, reporter=reporter)
        reply = await self._call(self._stub.FlagLookalike, request, timeout, pb.FlagLookalikeResponse)
        return reply.flag

    async def list_flags(
        self,
        status: pb.FlagStatus = pb.FLAG_STATUS_UNSPECIFIED,
        *,
        limit: int = 0,
        timeout: float | None = None,
    ) -> list[pb.Flag]:
        request = pb.ListFlagsRequest(status=status, limit=limit)
        reply = await self._call(self._stub.ListFlags, request, timeout, pb.ListFlagsResponse)
        return list(reply.flags)

    async def review_flag(
        self, flag_id: str, *, approve: bool, moderator: str, reason: str = "", timeout: float | None = None
    ) -> pb.Flag:
        request = pb.ReviewFlagRequest(
            flag_id=flag_id,
            decision=pb.FLAG_DECISION_APPROVE if approve else pb.FLAG_DECISION_DISMISS,
            moderator=moderator,
            reason=reason,
        )
        reply = await self._call(self._stub.ReviewFlag, request, timeout, pb.ReviewFlagResponse)
        return reply.flag

    async def feedback_stats(
        self, since: datetime | None = None, *, timeout: float | None = None
    ) -> pb.FeedbackStatsResponse:
        request = pb.FeedbackStatsRequest()
        if since is not None:
            request.since.FromDatetime(since)
        return await self._call(self._stub.FeedbackStats, request, timeout, pb.FeedbackStatsResponse)

    async def register_lora(
        self, source_url: str, metadata: pb.LoraMetadata, *, requested_by: str, timeout: float | None = None
    ) -> str:
        """Start a registration job; returns its id."""
        request = pb.RegisterLoraRequest(source_url=source_url, metadata=metadata, requested_by=requested_by)
        reply = await self._call(self._stub.RegisterLora, request, timeout, pb.RegisterLoraResponse)
        return str(reply.job_id)

    async def watch_job(self, job_id: str, *, timeout: float = 3600.0) -> AsyncIterator[pb.JobEvent]:
        """Progress events of a job until it ends; the deadline covers the whole stream."""
        call: Any = self._stub.WatchJob(
            pb.WatchJobRequest(job_id=job_id), timeout=timeout, metadata=self._metadata
        )
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        finally:
            call.cancel()

    async def create_client(
        self, name: str, role: str, *, users: str = "", timeout: float | None = None
    ) -> pb.CreateClientResponse:
        """Admins: a new client; its token is in the reply, once. `users`: the prefix of every user
        id it may act for ('' = any)."""
        request = pb.CreateClientRequest(name=name, role=role, users=users)
        return await self._call(self._stub.CreateClient, request, timeout, pb.CreateClientResponse)

    async def list_clients(
        self, *, include_revoked: bool = False, timeout: float | None = None
    ) -> list[pb.ClientInfo]:
        request = pb.ListClientsRequest(include_revoked=include_revoked)
        reply = await self._call(self._stub.ListClients, request, timeout, pb.ListClientsResponse)
        return list(reply.clients)

    async def revoke_client(self, name: str, *, timeout: float | None = None) -> bool:
        """False when the client was revoked already."""
        request = pb.RevokeClientRequest(name=name)
        reply = await self._call(self._stub.RevokeClient, request, timeout, pb.RevokeClientResponse)
        return bool(reply.revoked)

    async def service_status(self, *, timeout: float | None = None) -> pb.ServiceStatusResponse:
        """Catalog size, encoder, database and registration queue of the service."""
        request = pb.ServiceStatusRequest()
        return await self._call(self._stub.ServiceStatus, request, timeout, pb.ServiceStatusResponse)

    async def health(self, timeout: float = 5.0) -> str:
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
