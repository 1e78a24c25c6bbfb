"""The FindLora gRPC servicer: thin translation between protobuf and the domain objects."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

import grpc
import psycopg
import psycopg_pool
import structlog
import torch
from PIL import Image
from psycopg.conninfo import conninfo_to_dict

from db import clients, searches
from db.status import database_status
from findlora_client.base_models import canonical
from findlora_client.protocol import MAX_QUERY_IMAGES, Reason
from inference_service.auth import check_acting_for, current_caller, require
from inference_service.config import Settings
from inference_service.decoding import DecodePool, Upload, UploadLimits, check_upload
from inference_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    reason_trailer,
)
from inference_service.feedback import record_feedback
from inference_service.feedback_report import build_report
from inference_service.limits import TokenBuckets, requester_key
from inference_service.messages import (
    FLAG_FROM_PROTO,
    client_to_proto,
    flag_to_proto,
    page_to_proto,
    precision_to_proto,
)
from inference_service.moderation import MAX_ARTWORKS, Moderation
from inference_service.observability import RPC_LATENCY, RPC_REQUESTS
from inference_service.registration.jobs import Registration, Registrations
from inference_service.search import SearchQuery
from inference_service.search.engine import SearchEngine
from inference_service.text_bounds import check_text_bounds
from inference_service.timing import StageTimer
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]

_JOB_STATES = {
    "queued": pb.JOB_STATE_QUEUED,
    "running": pb.JOB_STATE_RUNNING,
    "succeeded": pb.JOB_STATE_SUCCEEDED,
    "failed": pb.JOB_STATE_FAILED,
}
_STATUS_TO_PROTO = {
    "active": pb.LORA_STATUS_ACTIVE,
    "hidden": pb.LORA_STATUS_HIDDEN,
    "taken_down": pb.LORA_STATUS_TAKEN_DOWN,
}
_STATUS_FROM_PROTO = {value: key for key, value in _STATUS_TO_PROTO.items()}
_VOTES = {pb.VOTE_UP: "up", pb.VOTE_DOWN: "down"}
DATABASE_DOWN = "the catalog database is unavailable; try again"


Failure = tuple[grpc.StatusCode, Reason, str, tuple[tuple[str, str], ...]]


def _failure(exc: Exception, bound: Any, request_id: str) -> Failure:
    """The status, reason, message and extra trailers for an exception, logged once."""
    if isinstance(exc, ServiceError):
        bound.info("rpc_rejected", code=exc.code.name, reason=exc.message)
        return exc.code, exc.reason, exc.message, exc.trailing_metadata()
    if isinstance(exc, psycopg.errors.QueryCanceled):
        # statement_timeout (Database.search_timeout_ms): an OperationalError, not an outage.
        bound.warning("database_query_timeout")
        message = "the search took longer than the catalog database allows; try again later"
        return grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DATABASE_TIMEOUT, message, ()
    if isinstance(exc, psycopg.DataError):
        # e.g. a NUL character in a note or name: PostgreSQL text cannot store it.
        code = grpc.StatusCode.INVALID_ARGUMENT
        bound.info("rpc_rejected", code=code.name, reason=type(exc).__name__)
        return code, Reason.INVALID_ARGUMENT, "a text field holds characters that cannot be stored", ()
    if isinstance(exc, torch.OutOfMemoryError):
        # A batch too large for what the accelerator has free now (GMI shares it): every request
        # of the batch may succeed on its own or later, so BUSY (retry), not INTERNAL.
        bound.warning("accelerator_out_of_memory")
        message = "the service is short of GPU memory; try again"
        return grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.BUSY, message, ()
    if isinstance(exc, (psycopg.OperationalError, psycopg_pool.PoolTimeout)):
        bound.warning("database_unavailable", error=str(exc).splitlines()[0] if str(exc) else "")
        return grpc.StatusCode.UNAVAILABLE, Reason.DATABASE_UNAVAILABLE, DATABASE_DOWN, ()
    bound.exception("rpc_failed")
    return grpc.StatusCode.INTERNAL, Reason.INTERNAL, f"internal error (request {request_id})", ()


def rpc(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Map domain errors to gRPC statuses with their reason (trailing metadata), log one
    structured line per call with its stages (also a server-timing trailer), never leak a trace."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        name = handler.__name__
        request_id = uuid.uuid4().hex[:12]
        bound = log.bind(rpc=name, request_id=request_id)
        timer = StageTimer()  # the stages the handler times (inference_service.timing)
        code = grpc.StatusCode.OK
        try:
            check_text_bounds(request)
            check_acting_for(request)
            response = await timer.run(handler(self, request, context))
        except Exception as exc:
            code, reason, message, extra = _failure(exc, bound, request_id)
        except asyncio.CancelledError:  # the client went away or its deadline passed: not an OK
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            elapsed = timer.elapsed()
            RPC_LATENCY.labels(name).observe(elapsed)
            RPC_REQUESTS.labels(name, code.name).inc()
        if code != grpc.StatusCode.OK:
            await context.abort(code, message, trailing_metadata=reason_trailer(reason, *extra))
        bound.info("rpc_ok", ms=round(elapsed * 1000, 1), **timer.report(context, elapsed))
        return response

    return wrapper


class FindLoraServicer(pb_grpc.FindLoraServicer):  # type: ignore[misc]
    def __init__(
        self,
        engine: SearchEngine,
        moderation: Moderation,
        settings: Settings,
        registrations: Registrations | None = None,
        decoder: DecodePool | None = None,
        *,
        feedback_key: bytes,
    ) -> None:
        self.engine = engine
        self.moderation = moderation
        self.settings = settings
        self.registrations = registrations
        self.feedback_key = feedback_key  # HMAC key of voters' pseudonyms
        self.decoder = decoder or DecodePool.from_settings(settings)
        self.buckets = TokenBuckets.from_settings(settings)
        self.watching = 0  # open WatchJob streams (settings.max_watch_streams)

    def _registrations(self) -> Registrations:
        if self.registrations is None:
            raise FailedPrecondition(
                "LoRA registration is not enabled on this service", reason=Reason.REGISTRATION_DISABLED
            )
        return self.registrations

    @rpc
    async def RegisterLora(
        self, request: pb.RegisterLoraRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterLoraResponse:
        m = request.metadata
        job_id = await self._registrations().submit(
            Registration(
                source_url=request.source_url,
                name=m.name,
                slug=m.slug,
                base_model=m.base_model,
                trigger_words=list(m.trigger_words),
                license=m.license,
                author=m.author,
                nsfw=m.nsfw,
                page_url=m.page_url,
                requested_by=request.requested_by,
                client=current_caller().name,
            )
        )
        return pb.RegisterLoraResponse(job_id=str(job_id))

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.JobEvent]:
        """Server stream: one event per change until the job ends (errors mapped and counted like
        @rpc; the latency observed is the stream's whole life)."""
        counted = False
        code = grpc.StatusCode.OK
        started = time.monotonic()
        try:
            if self.watching >= self.settings.max_watch_streams:
                raise ResourceExhausted(
                    f"{self.watching} registrations are being followed already; the job goes on "
                    "without being watched: follow it again in a while"
                )
            self.watching, counted = self.watching + 1, True
            async for event in self._registrations().watch(request.job_id, self._caller_still_live()):
                yield pb.JobEvent(
                    job_id=event.job_id,
                    state=_JOB_STATES[event.state],
                    step=event.step,
                    progress=event.progress,
                    message=event.message,
                    lora_id=event.lora_id,
                    slug=event.slug,
                    lookalikes=[
                        pb.LookalikeWarning(
                            similar_slug=w["slug"], centroid_distance=w["distance"], threshold=w["threshold"]
                        )
                        for w in event.lookalikes
                    ],
                )
        except Exception as exc:
            request_id = uuid.uuid4().hex[:12]
            bound = log.bind(rpc="WatchJob", request_id=request_id)
            code, reason, message, extra = _failure(exc, bound, request_id)
            await context.abort(code, message, trailing_metadata=reason_trailer(reason, *extra))
        except (asyncio.CancelledError, GeneratorExit):  # the client went away: not an OK
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if counted:
                self.watching -= 1
            RPC_LATENCY.labels("WatchJob").observe(time.monotonic() - started)
            RPC_REQUESTS.labels("WatchJob", code.name).inc()

    def _caller_still_live(self) -> Callable[[], Awaitable[None]]:
        """For a stream that outlives its first call: a revocation ends it at the next poll (the
        interceptor checks a token once per call)."""
        token_id = current_caller().token_id

        async def check() -> None:
            if token_id and not await self.engine.db.run(clients.token_is_live, token_id):
                raise Unauthenticated("this client's token was revoked; the stream ends")

        return check

    async def _decode(
        self, images: Sequence[pb.Image], max_images: int, what: str, requester: str, peer: str
    ) -> list[Image.Image]:
        """Rate limit, then count and bytes from the request, then decoding in the bounded pool."""
        self.buckets.take(requester_key(current_caller().name, requester, peer))
        uploads = [Upload(image.data, image.filename or f"image {i + 1}") for i, image in enumerate(images)]
        check_upload(
            uploads,
            UploadLimits(
                max_images, self.settings.max_image_bytes, self.settings.max_request_image_bytes, what
            ),
        )
        return await self.decoder.decode(uploads)

    @rpc
    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        if request.exact:
            require(clients.Role.MODERATE, "an exact search (every reference ranked, slow)")
        images = await self._decode(
            request.images, MAX_QUERY_IMAGES, "images of one style", request.requested_by, context.peer()
        )
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        page = await self.engine.search(
            SearchQuery(
                images=images,
                top_k=request.top_k,
                base_model=canonical(request.base_model),
                allow_nsfw=request.allow_nsfw,
                prompt=request.prompt if request.HasField("prompt") else None,
                requested_by=request.requested_by,
                exact=request.exact,
                deadline=deadline,
            )
        )
        return page_to_proto(page)

    @rpc
    async def GetPage(
        self, request: pb.GetPageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        page = await self.engine.page(request.search_id, request.offset, request.limit, request.allow_nsfw)
        return page_to_proto(page)

    @rpc
    async def RecordFeedback(
        self, request: pb.RecordFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordFeedbackResponse:
        vote = _VOTES.get(request.vote)
        if vote is None:
            raise InvalidArgument("vote must be VOTE_UP or VOTE_DOWN")
        counted = await record_feedback(
            self.engine.db, request.search_id, request.lora_id, vote, request.user, key=self.feedback_key
        )
        return pb.RecordFeedbackResponse(counted=counted)

    @rpc
    async def SetLoraStatus(
        self, request: pb.SetLoraStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLoraStatusResponse:
        status = _STATUS_FROM_PROTO.get(request.status)
        if status is None:
            raise InvalidArgument("status must be active, hidden or taken down")
        caller = (
            require(clients.Role.ADMIN, "taking a LoRA down") if status == "taken_down" else current_caller()
        )
        change = await self.moderation.set_status(
            request.lora, status, request.moderator, request.reason, client=caller.name
        )
        return pb.SetLoraStatusResponse(slug=change.lora.slug, status=_STATUS_TO_PROTO[change.status])

    @rpc
    async def FlagLookalike(
        self, request: pb.FlagLookalikeRequest, context: grpc.aio.ServicerContext
    ) -> pb.FlagLookalikeResponse:
        artworks = await self._decode(
            request.artworks, MAX_ARTWORKS, "images of your artwork", request.reporter, context.peer()
        )
        flag = await self.moderation.flag_lookalike(
            request.lora, artworks, request.note, request.reporter, client=current_caller().name
        )
        return pb.FlagLookalikeResponse(flag=await flag_to_proto(flag, self.engine.blobs))

    @rpc
    async def ListFlags(
        self, request: pb.ListFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlagsResponse:
        flags = await self.moderation.list_flags(FLAG_FROM_PROTO.get(request.status), request.limit)
        return pb.ListFlagsResponse(flags=[await flag_to_proto(flag, self.engine.blobs) for flag in flags])

    @rpc
    async def ReviewFlag(
        self, request: pb.ReviewFlagRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReviewFlagResponse:
        if request.decision not in (pb.FLAG_DECISION_APPROVE, pb.FLAG_DECISION_DISMISS):
            raise InvalidArgument("decision must be approve or dismiss")
        flag = await self.moderation.review(
            request.flag_id,
            request.decision == pb.FLAG_DECISION_APPROVE,
            request.moderator,
            request.reason,
            client=current_caller().name,
        )
        return pb.ReviewFlagResponse(flag=await flag_to_proto(flag, self.engine.blobs))

    @rpc
    async def FeedbackStats(
        self, request: pb.FeedbackStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.FeedbackStatsResponse:
        try:
            since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        except ValueError:  # outside 0001-9999: protobuf's own range check
            raise InvalidArgument("since is not a valid date") from None
        report = build_report(await self.engine.db.run(searches.feedback_votes, since))
        return pb.FeedbackStatsResponse(
            votes=report.votes,
            overall=precision_to_proto(report.overall),
            by_base_model=[precision_to_proto(r) for r in report.by_base_model],
            by_week=[precision_to_proto(r) for r in report.by_week],
        )

    # --- clients (admin) -------------------------------------------------------------------

    @rpc
    async def CreateClient(
        self, request: pb.CreateClientRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateClientResponse:
        caller = current_caller()
        try:
            role = clients.parse_role(request.role)
            async with self.engine.db.connection() as conn:
                issued = await clients.create_client(
                    conn,
                    request.name,
                    clients.roles_up_to(role),
                    actor=caller.name,
                    client=caller.name,
                    users=request.users,
                )
        except clients.ClientExists as exc:
            raise AlreadyExists(exc.message) from None
        except clients.ClientError as exc:
            raise InvalidArgument(exc.message) from None
        return pb.CreateClientResponse(
            name=issued.name, token=issued.token, roles=list(issued.roles), users=issued.users
        )

    @rpc
    async def ListClients(
        self, request: pb.ListClientsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListClientsResponse:
        async with self.engine.db.connection() as conn:
            rows = await clients.list_clients(conn, include_revoked=request.include_revoked)
        return pb.ListClientsResponse(clients=[client_to_proto(row) for row in rows])

    @rpc
    async def RevokeClient(
        self, request: pb.RevokeClientRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeClientResponse:
        caller = current_caller()
        try:
            async with self.engine.db.connection() as conn:
                revoked = await clients.revoke_client(
                    conn, request.name, actor=caller.name, client=caller.name
                )
        except clients.ClientError as exc:
            raise NotFound(exc.message) from None
        return pb.RevokeClientResponse(revoked=revoked)

    @rpc
    async def ServiceStatus(
        self, request: pb.ServiceStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServiceStatusResponse:
        alive = self.settings.worker_alive_seconds
        counts = await self.engine.db.run(database_status, alive)
        active = await self.engine.encoders.current_or_none()  # the catalog's, when it can load
        return pb.ServiceStatusResponse(
            active_loras=counts.active_loras,
            loras=counts.loras,
            samples=counts.samples,
            encoder=(active or self.engine.encoders.configured).label,
            catalog_encoder=counts.stored_encoder,
            database=database_description(self.settings),
            schema_version=counts.schema_version,
            registration_enabled=self.registrations is not None,
            jobs_queued=counts.jobs_queued,
            jobs_running=counts.jobs_running,
            live_workers=counts.live_workers,
        )


def database_description(settings: Settings) -> str:
    """Embedded or external, and where: host, port and database name, never credentials."""
    if not settings.database_url:
        return f"embedded PostgreSQL in {settings.pg_dir}"
    try:
        info = conninfo_to_dict(settings.database_url)
    except psycopg.ProgrammingError:
        return "external PostgreSQL"
    where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    return f"external PostgreSQL at {where}"
