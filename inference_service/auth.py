"""Who may call what (docs/design.md 13): one server interceptor, METHOD_ROLES, fail closed.

The token is looked up on every call, so a revocation holds from the next call (an open
WatchJob stream looks it up again at every poll: servicer._caller_still_live). The accepted
caller is put in a context variable for the servicer: grpc.aio calls the interceptors and the
handler in one contextvars.Context per RPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc
import psycopg
import psycopg_pool
import structlog
from grpc_reflection.v1alpha import reflection_pb2

from db.clients import Identity, Role, authenticate
from db.database import Database
from findlora_client.protocol import Reason
from inference_service.errors import PermissionDenied, reason_trailer
from inference_service.observability import RPC_REQUESTS
from protos import findlora_pb2

log = structlog.get_logger(__name__)

_FINDLORA = findlora_pb2.DESCRIPTOR.services_by_name["FindLora"].full_name
_REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
HEALTH_PREFIX = "/grpc.health.v1.Health/"  # load balancers and orchestrators probe without a token
HEALTH_CHECK = HEALTH_PREFIX + "Check"
# Health is open to anyone, and every call holds one of the server's RPC slots until it ends: a
# Check whose request message does not arrive within this is dropped.
HEALTH_READ_S = 5.0

# Every method of the FindLora service and reflection, and the least role that may call it.
METHOD_ROLES: dict[str, Role] = {
    **{
        f"/{_FINDLORA}/{name}": role
        for name, role in {
            "Search": Role.SEARCH,  # exact=true needs moderate (checked by the servicer)
            "GetPage": Role.SEARCH,
            "RecordFeedback": Role.SEARCH,
            "FlagLookalike": Role.SEARCH,
            "RegisterLora": Role.MODERATE,
            "WatchJob": Role.MODERATE,
            "SetLoraStatus": Role.MODERATE,  # a takedown needs admin (checked by the servicer)
            "ListFlags": Role.MODERATE,
            "ReviewFlag": Role.MODERATE,
            "FeedbackStats": Role.MODERATE,
            "CreateClient": Role.ADMIN,
            "ListClients": Role.ADMIN,
            "RevokeClient": Role.ADMIN,
            "ServiceStatus": Role.SEARCH,
        }.items()
    },
    f"/{_REFLECTION}/ServerReflectionInfo": Role.SEARCH,
}

_CALLER: ContextVar[Identity | None] = ContextVar("findlora_caller", default=None)
_MISSING = (
    "this service needs a client token: send the metadata 'authorization: Bearer <token>' "
    "(an operator creates one with: findlora auth add NAME --role search|moderate|admin)"
)
_NOT_BEARER = "the authorization metadata must be 'Bearer <token>'"
_REJECTED = "unknown or revoked client token"
_DB_DOWN = "the catalog database is unavailable; try again"


def current_caller() -> Identity:
    """The authenticated client of the RPC being served; refuses when there is none (fail closed)."""
    caller = _CALLER.get()
    if caller is None:
        raise PermissionDenied("no authenticated client for this call")
    return caller


# Request fields in which a client names the user it acts for.
USER_FIELDS = ("requested_by", "user", "reporter", "moderator")


def check_acting_for(request: Any) -> None:
    """A client bound to a user-id prefix (`findlora auth add --users discord:`) may name only
    users under it: a Slack app cannot flag, vote or moderate as a Discord user. Checked for every
    RPC by the servicer's wrapper, so a new RPC with such a field cannot forget it."""
    caller = _CALLER.get()
    if caller is None or not caller.users:
        return
    fields = request.DESCRIPTOR.fields_by_name
    for field in USER_FIELDS:
        value = getattr(request, field) if field in fields else ""
        if value and not caller.may_act_for(value):
            raise PermissionDenied(
                f"client {caller.name!r} acts only for user ids starting with {caller.users!r}; "
                f"{field} is {value[:60]!r}"
            )


def require(role: Role, what: str) -> Identity:
    """The caller, when it holds `role`; PERMISSION_DENIED naming what needed it otherwise."""
    caller = current_caller()
    if not caller.has(role):
        raise PermissionDenied(f"{what} needs the {role} role; client {caller.name!r} {_holds(caller)}")
    return caller


def _holds(caller: Identity) -> str:
    held = [str(r) for r in Role if r in caller.roles]
    return f"holds {', '.join(held)}" if held else "holds no role"


def _bearer(metadata: Any) -> str | None:
    """The token of the `authorization` metadata; '' when present but not a bearer token."""
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


Handler: TypeAlias = grpc.RpcMethodHandler
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self.db = db

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # an unknown method gets UNIMPLEMENTED
        if method.startswith(HEALTH_PREFIX):
            return _open_health(handler, method)
        token = _bearer(handler_call_details.invocation_metadata)
        if not token:
            log.info("rpc_unauthenticated", method=method, reason="no bearer token")
            return _refusal(
                handler, grpc.StatusCode.UNAUTHENTICATED, _MISSING if token is None else _NOT_BEARER, method
            )
        try:
            caller = await self.db.run(authenticate, token)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            log.warning("auth_database_unavailable", method=method, error=type(exc).__name__)
            return _refusal(handler, grpc.StatusCode.UNAVAILABLE, _DB_DOWN, method)
        if caller is None:
            log.info("rpc_unauthenticated", method=method, reason="unknown or revoked token")
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, _REJECTED, method)
        needed = METHOD_ROLES.get(method)
        if needed is None:
            log.warning("rpc_without_access_rule", method=method, client=caller.name)
            return _refusal(
                handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} has no access rule; refused", method
            )
        if not caller.has(needed):
            log.info("rpc_permission_denied", method=method, client=caller.name, needs=str(needed))
            rpc = method.rsplit("/", 1)[-1]
            message = f"{rpc} needs the {needed} role; client {caller.name!r} {_holds(caller)}"
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, message, method)
        # The same context runs the handler: the servicer reads the caller, the logs name it.
        _CALLER.set(caller)
        structlog.contextvars.bind_contextvars(client=caller.name)
        return handler


def _open_health(handler: Handler, method: str) -> Handler:
    """Health without a token, bounded in time: Check reads its request within HEALTH_READ_S (a
    caller that never sends it would hold an RPC slot for good, and 64 of them would fail every
    probe and search); Watch, a stream that stays open by design, is not served (probes use Check)."""
    if method != HEALTH_CHECK:
        rpc = method.rsplit("/", 1)[-1]
        return _refusal(
            handler, grpc.StatusCode.UNIMPLEMENTED, f"Health.{rpc} is not served; use Check", method
        )
    check = handler.unary_unary

    async def bounded_check(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = await asyncio.wait_for(anext(aiter(requests)), HEALTH_READ_S)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the health check's request did not arrive"
            )
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a health check needs its request message")
        return await check(request, context)

    result: Handler = grpc.stream_unary_rpc_method_handler(
        bounded_check,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    return result


def _refusal(handler: Handler, code: grpc.StatusCode, message: str, method: str) -> Handler:
    """A handler that only aborts, at once: it takes the request as a stream it never reads, so
    grpc does not wait for (or buffer) the message of a call it refuses, and a caller that never
    sends one cannot hold an RPC slot. Counted like any RPC outcome: a database outage shows as
    UNAVAILABLE calls, not as quiet."""
    down = code == grpc.StatusCode.UNAVAILABLE  # the only outage here: the clients table
    reason = Reason.DATABASE_UNAVAILABLE if down else Reason.parse(None, code)
    rpc = method.rsplit("/", 1)[-1]

    async def abort(requests: Any, context: grpc.aio.ServicerContext) -> None:
        RPC_REQUESTS.labels(rpc, code.name).inc()
        await context.abort(code, message, trailing_metadata=reason_trailer(reason))

    # Request-streaming whatever the method's kind: only then does grpc call the handler before
    # the request message has arrived. The response kind stays the method's own.
    make = (
        grpc.stream_stream_rpc_method_handler
        if handler.response_streaming
        else grpc.stream_unary_rpc_method_handler
    )
    result: Handler = make(
        abort,
        request_deserializer=None,  # the refused request stays bytes: nothing parses it
        response_serializer=handler.response_serializer,
    )
    return result
