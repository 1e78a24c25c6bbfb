"""The FindLora gRPC servicer: thin translation between protobuf and the domain objects."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg
import psycopg_pool
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from inference_service.config import Settings
from inference_service.errors import InvalidArgument, ServiceError
from inference_service.imaging import ImageRejected, decode_image
from inference_service.search import SearchEngine, SearchPage, SearchQuery
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]

_PENDING: dict[str, str] = {
    "RegisterLora": "LoRA registration",
    "WatchJob": "LoRA registration",
    "SetLoraStatus": "moderation",
    "FlagLookalike": "lookalike flags",
    "ListFlags": "lookalike flags",
    "ReviewFlag": "lookalike flags",
}


def rpc(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Map domain errors to gRPC statuses, log one structured line per call, never leak a trace."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        request_id = uuid.uuid4().hex[:12]
        bound = log.bind(rpc=handler.__name__, request_id=request_id)
        try:
            response = await handler(self, request, context)
        except ServiceError as exc:
            bound.info("rpc_rejected", code=exc.code.name, reason=exc.message)
            await context.abort(exc.code, exc.message)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            bound.warning("database_unavailable", error=str(exc).splitlines()[0] if str(exc) else "")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the catalog database is unavailable; try again")
        except Exception:
            bound.exception("rpc_failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request {request_id})")
        bound.info("rpc_ok")
        return response

    return wrapper


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def page_to_proto(page: SearchPage) -> pb.SearchResponse:
    return pb.SearchResponse(
        search_id=str(page.search_id),
        pseudo_prompt=page.pseudo_prompt,
        offset=page.offset,
        total=page.total,
        expires_at=_timestamp(page.expires_at),
        matches=[
            pb.Match(
                rank=m.rank,
                lora_id=m.lora.id,
                slug=m.lora.slug,
                name=m.lora.name,
                url=m.lora.page_url,
                base_model=m.lora.base_model,
                score=m.score,
                style_distance=m.style_distance,
                rkme_score=m.rkme_score,
                suggested_prompt=m.suggested_prompt,
                nsfw=m.lora.nsfw,
                trigger_words=m.lora.trigger_words,
                transfers=[
                    pb.SampleTransfer(
                        sample_id=t.sample_id,
                        key=t.key,
                        thumbnail=t.thumbnail,
                        mime_type="image/webp",
                        distance=t.distance,
                    )
                    for t in m.transfers
                ],
            )
            for m in page.matches
        ],
    )


class FindLoraServicer(pb_grpc.FindLoraServicer):  # type: ignore[misc]
    def __init__(self, engine: SearchEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def _decode(self, image: pb.Image, index: int) -> Any:
        name = image.filename or f"image {index + 1}"
        try:
            return decode_image(
                image.data,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
                name=name,
            )
        except ImageRejected as exc:
            raise InvalidArgument(str(exc)) from None

    @rpc
    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        images = [self._decode(image, i) for i, image in enumerate(request.images)]
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        page = await self.engine.search(
            SearchQuery(
                images=images,
                top_k=request.top_k,
                base_model=request.base_model,
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


def _unimplemented(name: str, capability: str) -> Callable[..., Any]:
    async def handler(self: FindLoraServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{name} is not available yet: {capability} is not part of this release of findlora",
        )

    handler.__name__ = name
    return handler


for _name, _capability in _PENDING.items():
    setattr(FindLoraServicer, _name, _unimplemented(_name, _capability))
