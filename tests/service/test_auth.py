"""Who can call what, through the real gRPC service: every RPC of the proto against no token, an
unknown token, a token one role too low and the right role; the servicer's own checks (exact
search, takedown); client management over gRPC; revocation without a restart."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from db import moderation
from db.clients import ROLES, Role
from db.database import Database
from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from findlora_client.protocol import REASON_TRAILER
from inference_service import auth
from inference_service.config import Settings
from inference_service.errors import PermissionDenied
from inference_service.server import RunningService
from protos import findlora_pb2 as pb
from tests.helpers.service import ServedCatalog, issue_token, served_catalog, service_client

pytestmark = pytest.mark.db
FINDLORA = pb.DESCRIPTOR.services_by_name["FindLora"]
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# A well-formed token of no client: the lookup part matches nothing.
UNKNOWN = "fl_0123456789ab_" + "x" * 43


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def call_status(
    channel: grpc.aio.Channel, method: MethodDescriptor, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    """Call any RPC with an empty request; its status (OK when a stream ended without error)."""
    assert not method.client_streaming, "add client-streaming calls to this test"
    request_class = message_factory.GetMessageClass(method.input_type)
    reply_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    call = kind(
        path, request_serializer=request_class.SerializeToString, response_deserializer=reply_class.FromString
    )
    try:
        if method.server_streaming:
            async for _ in call(request_class(), metadata=metadata, timeout=10):
                pass
        else:
            await call(request_class(), metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def one_role_too_low(role: Role) -> Role | None:
    index = ROLES.index(role)
    return ROLES[index - 1] if index else None  # below search: a client holding no role


@pytest.fixture
async def tokens(empty_service: RunningService) -> dict[Role | None, str]:
    return {role: await issue_token(empty_service, role, f"t-{role or 'none'}") for role in (None, *ROLES)}


def test_every_rpc_of_the_proto_has_a_role_and_nothing_else_does() -> None:
    rpcs = {f"/{FINDLORA.full_name}/{m.name}" for m in FINDLORA.methods}
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert set(auth.METHOD_ROLES) == rpcs | {reflection}
    # The roles the service promises (docs/reliability.md, "Who can call what").
    by_role = {
        role: sorted(m.rsplit("/", 1)[1] for m, r in auth.METHOD_ROLES.items() if r == role) for role in ROLES
    }
    assert by_role == {
        Role.SEARCH: [
            "FlagLookalike",
            "GetPage",
            "RecordFeedback",
            "Search",
            "ServerReflectionInfo",
            "ServiceStatus",
        ],
        Role.MODERATE: [
            "FeedbackStats",
            "ListFlags",
            "RegisterLora",
            "ReviewFlag",
            "SetLoraStatus",
            "WatchJob",
        ],
        Role.ADMIN: ["CreateClient", "ListClients", "RevokeClient"],
    }


async def test_every_rpc_refuses_no_unknown_and_too_low_tokens_and_admits_its_role(
    empty_service: RunningService, tokens: dict[Role | None, str]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{empty_service.port}") as channel:
        for method in FINDLORA.methods:
            needed = auth.METHOD_ROLES[f"/{FINDLORA.full_name}/{method.name}"]
            outcome = {
                "no token": await call_status(channel, method, ()),
                "unknown token": await call_status(channel, method, bearer(UNKNOWN)),
                "too low": await call_status(channel, method, bearer(tokens[one_role_too_low(needed)])),
            }
            assert outcome == {
                "no token": grpc.StatusCode.UNAUTHENTICATED,
                "unknown token": grpc.StatusCode.UNAUTHENTICATED,
                "too low": grpc.StatusCode.PERMISSION_DENIED,
            }, method.name
            admitted = await call_status(channel, method, bearer(tokens[needed]))
            assert admitted not in REFUSALS, method.name


async def test_reflection_needs_a_client_and_health_does_not(
    empty_service: RunningService, tokens: dict[Role | None, str]
) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{empty_service.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stub.ServerReflectionInfo(iter([request]), timeout=5):
                pass
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        replies = stub.ServerReflectionInfo(iter([request]), timeout=5, metadata=bearer(tokens[Role.SEARCH]))
        names = {s.name for reply in [r async for r in replies] for s in reply.list_services_response.service}
        assert "findlora.v1.FindLora" in names
    async with FindLoraClient(f"127.0.0.1:{empty_service.port}") as anonymous:
        assert await anonymous.health() == "SERVING"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Basic dXNlcjpwYXNz", "the authorization metadata must be 'Bearer <token>'"),
        ("Bearer not-a-findlora-token", "unknown or revoked client token"),
        ("Bearer ", "the authorization metadata must be 'Bearer <token>'"),
    ],
)
async def test_malformed_authorization_is_unauthenticated(
    empty_service: RunningService, authorization: str, message: str
) -> None:
    counted = REGISTRY.get_sample_value(
        "findlora_rpc_requests_total", {"rpc": "ListFlags", "code": "UNAUTHENTICATED"}
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{empty_service.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(
                "/findlora.v1.FindLora/ListFlags",
                request_serializer=pb.ListFlagsRequest.SerializeToString,
                response_deserializer=pb.ListFlagsResponse.FromString,
            )(pb.ListFlagsRequest(), metadata=(("authorization", authorization),), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == message
    assert dict(refused.value.trailing_metadata() or ())[REASON_TRAILER] == "UNAUTHENTICATED"
    # Refusals are RPC outcomes too: before the handler, but in the same counter.
    after = REGISTRY.get_sample_value(
        "findlora_rpc_requests_total", {"rpc": "ListFlags", "code": "UNAUTHENTICATED"}
    )
    assert after == (counted or 0.0) + 1


async def test_a_known_lookup_with_a_wrong_secret_is_refused(
    empty_service: RunningService, tokens: dict[Role | None, str]
) -> None:
    real = tokens[Role.ADMIN]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")  # same row, other secret
    async with service_client(empty_service, forged) as client:
        with pytest.raises(ServiceCallError) as refused:
            await client.list_flags()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.message == "unknown or revoked client token"


async def test_only_the_tokens_sha256_is_stored(empty_service: RunningService, db: Database) -> None:
    token = await issue_token(empty_service, Role.SEARCH, "stored-check")
    async with empty_service.runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT clients::text, token_sha256 FROM clients WHERE name = 'stored-check'"
        )
        row = await cur.fetchone()
    assert row is not None
    secret = token[len("fl_0123456789ab_") :]
    assert secret not in row[0]
    assert token not in row[0]
    assert bytes(row[1]) == hashlib.sha256(token.encode()).digest()


async def test_a_method_missing_from_the_role_table_is_refused(
    empty_service: RunningService, tokens: dict[Role | None, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(auth.METHOD_ROLES, "/findlora.v1.FindLora/ListFlags")
    async with service_client(empty_service, tokens[Role.ADMIN]) as client:
        with pytest.raises(ServiceCallError) as refused:
            await client.list_flags()
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.message == "/findlora.v1.FindLora/ListFlags has no access rule; refused"


def test_the_servicer_refuses_when_no_client_was_authenticated() -> None:
    with pytest.raises(PermissionDenied, match="no authenticated client"):
        auth.current_caller()


@pytest.fixture
async def served(settings: Settings, tmp_path: Path) -> AsyncIterator[ServedCatalog]:
    async with served_catalog(settings, tmp_path) as served:
        yield served


async def test_exact_search_needs_moderate(served: ServedCatalog) -> None:
    query = [QueryImage(served.reference_bytes("style-02"), "q.png")]
    async with served.client(Role.SEARCH) as searcher:
        assert (await searcher.search(query, top_k=3)).matches[0].slug == "style-02"
        with pytest.raises(ServiceCallError) as refused:
            await searcher.search(query, top_k=3, exact=True)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.message == (
        "an exact search (every reference ranked, slow) needs the moderate role; "
        "client 'test-search' holds search"
    )
    async with served.client(Role.MODERATE) as moderator:
        assert (await moderator.search(query, top_k=3, exact=True)).matches[0].slug == "style-02"


async def test_takedown_needs_admin_hide_needs_moderate(served: ServedCatalog, db: Database) -> None:
    async with served.client(Role.SEARCH) as searcher, served.client(Role.MODERATE) as moderator:
        with pytest.raises(ServiceCallError) as refused:
            await searcher.set_lora_status("style-01", pb.LORA_STATUS_HIDDEN, moderator="m")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        await moderator.set_lora_status("style-01", pb.LORA_STATUS_HIDDEN, moderator="m")
        with pytest.raises(ServiceCallError) as refused:
            await moderator.set_lora_status("style-01", pb.LORA_STATUS_TAKEN_DOWN, moderator="m")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.message == (
            "taking a LoRA down needs the admin role; client 'test-moderate' holds search, moderate"
        )
    async with served.client(Role.ADMIN) as admin:
        taken = await admin.set_lora_status("style-01", pb.LORA_STATUS_TAKEN_DOWN, moderator="boss")
    assert taken.status == pb.LORA_STATUS_TAKEN_DOWN
    entries = [(e.actor, e.action, e.client) for e in await db.run(moderation.audit_entries, "style-01")]
    assert entries == [("m", "lora_hidden", "test-moderate"), ("boss", "lora_taken_down", "test-admin")]


async def test_clients_over_grpc_and_revocation_on_the_next_call(
    empty_service: RunningService, tokens: dict[Role | None, str], db: Database
) -> None:
    async with service_client(empty_service, tokens[Role.ADMIN]) as admin:
        created = await admin.create_client("ci-bot", "moderate")
        assert (created.name, list(created.roles)) == ("ci-bot", ["search", "moderate"])
        assert created.token.startswith("fl_")
        async with service_client(empty_service, created.token) as bot:
            assert await bot.list_flags() == []
            with pytest.raises(ServiceCallError) as refused:
                await bot.list_clients()
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED

            assert await admin.revoke_client("ci-bot") is True
            with pytest.raises(ServiceCallError) as refused:  # same channel, no restart
                await bot.list_flags()
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert await admin.revoke_client("ci-bot") is False

        listed = {c.name: c for c in await admin.list_clients(include_revoked=True)}
        assert listed["ci-bot"].HasField("revoked_at")
        assert not listed["t-admin"].HasField("revoked_at")
        assert "ci-bot" not in {c.name for c in await admin.list_clients()}

        for name, role, code, message in [
            ("ci-bot", "search", grpc.StatusCode.ALREADY_EXISTS, "a client named 'ci-bot' exists already"),
            (
                "other",
                "root",
                grpc.StatusCode.INVALID_ARGUMENT,
                "role must be one of search, moderate, admin",
            ),
            ("Bad Name", "search", grpc.StatusCode.INVALID_ARGUMENT, "client name 'Bad Name' must be"),
        ]:
            with pytest.raises(ServiceCallError) as refused:
                await admin.create_client(name, role)
            assert refused.value.code == code
            assert refused.value.message.startswith(message)
        with pytest.raises(ServiceCallError) as refused:
            await admin.revoke_client("nobody")
        assert refused.value.code == grpc.StatusCode.NOT_FOUND
    entries = [(e.actor, e.action, e.client) for e in await db.run(moderation.audit_entries, "ci-bot")]
    assert entries == [("t-admin", "client_create", "t-admin"), ("t-admin", "client_revoke", "t-admin")]
