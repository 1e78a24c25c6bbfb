"""What the client library does with what people hand it: malformed links and deeply nested lists,
lists saved with a byte-order mark, unusable tokens, oversized requests, and the service's own
reasons for an UNAVAILABLE. Servers here are real gRPC servers on port 0 (the network edge)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health, health_pb2_grpc
from pydantic import SecretStr

from findlora_client import (
    MAX_MESSAGE_BYTES,
    ClientTls,
    FindLoraClient,
    QueryImage,
    Reason,
    ServiceCallError,
    ServiceUnreachable,
    TokenMissing,
)
from findlora_client.bulk import parse_list
from findlora_client.credentials import ServiceAccess, read_secret, require_secret
from findlora_client.links import page_link_problem
from findlora_client.protocol import REASON_TRAILER
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc

SECRET = "Zq9xK2"  # in every unusable token below: no message may show it
BAD_HOST = "https://[civitai.com/models/5"  # urlsplit raises ValueError("Invalid IPv6 URL")


# --- malformed links and nesting: a problem of one entry (or of the file), never a traceback


def test_a_malformed_page_link_is_a_problem_not_an_exception() -> None:
    problem = page_link_problem(BAD_HOST)
    assert problem is not None
    assert "not a valid URL" in problem


def test_a_malformed_page_link_in_a_toml_list_fails_only_its_entry() -> None:
    text = f"""
[[lora]]
url = "https://civitai.com/api/download/models/1"
name = "Good"

[[lora]]
url = "https://civitai.com/api/download/models/2"
name = "Bad page"
page_url = "{BAD_HOST}"
"""
    parsed = parse_list(text, "list.toml")
    assert [e.name for e in parsed.entries] == ["Good"]
    assert [(b.where, "not a valid URL" in b.reason) for b in parsed.bad] == [("line 6", True)]


def test_a_malformed_download_link_in_a_json_list_fails_only_its_entry() -> None:
    versions = [{"downloadUrl": "https://[bad/x"}, {"downloadUrl": "https://civitai.com/a.safetensors"}]
    parsed = parse_list(json.dumps(versions), "a.json")
    assert [e.where for e in parsed.entries] == ["[1]"]
    assert [b.where for b in parsed.bad] == ["[0]"]
    assert "not a valid URL" in parsed.bad[0].reason


@pytest.mark.parametrize(
    ("text", "filename"), [("[" * 100_000, "a.json"), ("x = " + "[" * 100_000, "a.toml")]
)
def test_a_deeply_nested_list_is_one_clear_file_error(text: str, filename: str) -> None:
    parsed = parse_list(text, filename)
    assert parsed.entries == []
    assert [(b.where, "too deeply nested" in b.reason) for b in parsed.bad] == [("the file", True)]


# --- lists saved with a UTF-8 byte-order mark (PowerShell's default) keep every entry


A, B = "https://x.org/a.safetensors", "https://x.org/b.safetensors"


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        (f"{A}\n{B}\n", "l.txt"),
        (f'[[lora]]\nurl = "{A}"\n[[lora]]\nurl = "{B}"\n', "l.toml"),
        (json.dumps([{"downloadUrl": A}, {"downloadUrl": B}]), "l.json"),
        (f"{A}\n{B}\n", "upload"),  # the format told from the content
    ],
)
def test_a_list_with_a_byte_order_mark_keeps_its_first_entry(text: str, filename: str) -> None:
    parsed = parse_list("\ufeff" + text, filename)
    assert parsed.bad == []
    assert [e.source for e in parsed.entries] == [A, B]


def test_a_wrong_scheme_is_named_as_such_not_as_a_missing_host() -> None:
    parsed = parse_list("ftp://x/y.safetensors\nhttps:///y.safetensors\n", "l.txt")
    reasons = {b.where: b.reason for b in parsed.bad}
    assert reasons["line 1"] == "only https:// download links are accepted, not ftp://"
    assert reasons["line 2"] == "not a valid download link (https:// with no usable host)"


# --- tokens: a byte-order mark is dropped; anything else unusable names where it came from


def access(monkeypatch: pytest.MonkeyPatch, **env: str) -> ServiceAccess:
    """The settings as a process with exactly these FINDLORA_ variables reads them."""
    for name in ("FINDLORA_TOKEN", "FINDLORA_TOKEN_FILE", "FINDLORA_SERVICE_CA", "FINDLORA_SERVICE_TLS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ServiceAccess()


def test_a_token_file_with_a_byte_order_mark_gives_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xef\xbb\xbfs3cret-token\r\n")
    assert read_secret(None, path) == "s3cret-token"
    assert access(monkeypatch, FINDLORA_TOKEN_FILE=str(path)).read_service_token() == "s3cret-token"


@pytest.mark.parametrize(
    "content",
    [
        f"tök-{SECRET}".encode("utf-16"),  # not UTF-8 at all
        f"tök-{SECRET}".encode(),  # not ASCII
        f"tok\x07-{SECRET}".encode(),  # a control character
    ],
)
def test_an_unusable_token_file_is_named_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(TokenMissing) as info:
        access(monkeypatch, FINDLORA_TOKEN_FILE=str(path)).read_service_token()
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("value", [f"tök-{SECRET}", f"tok\x1b[0m-{SECRET}", f"tok\u200b-{SECRET}"])
def test_an_unusable_token_variable_is_named_never_shown(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(TokenMissing) as info:
        access(monkeypatch, FINDLORA_TOKEN=value).read_service_token()
    assert "FINDLORA_TOKEN" in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(TokenMissing, match="SLACK_BOT_TOKEN") as info:
        require_secret(SecretStr(value), None, "SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE")
    assert SECRET not in str(info.value)


# --- a real gRPC server at the edge of the client


class ScriptedService(pb_grpc.FindLoraServicer):  # type: ignore[misc]
    """Answers Search with `abort` (code, message, reason) when set, else an empty response."""

    def __init__(self) -> None:
        self.abort: tuple[grpc.StatusCode, str, str] | None = None
        self.calls = 0

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        self.calls += 1
        if self.abort is not None:
            code, message, reason = self.abort
            await context.abort(code, message, trailing_metadata=((REASON_TRAILER, reason),))
        return pb.SearchResponse(search_id="ok")


@dataclass
class Served:
    servicer: ScriptedService
    address: str


async def serve(options: list[tuple[str, int]] | None = None) -> tuple[grpc.aio.Server, Served]:
    servicer = ScriptedService()
    server = grpc.aio.server(options=options or [])
    pb_grpc.add_FindLoraServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, Served(servicer, f"127.0.0.1:{port}")


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    server, served = await serve()
    yield served
    await server.stop(0)


async def test_the_database_being_down_is_said_as_such_not_as_an_unreachable_service(served: Served) -> None:
    message = "the catalog database is unavailable; try again"
    served.servicer.abort = (grpc.StatusCode.UNAVAILABLE, message, Reason.DATABASE_UNAVAILABLE)
    async with FindLoraClient(served.address, timeout=10) as client:
        with pytest.raises(ServiceCallError) as info:
            await client.search([QueryImage(b"x")])
    assert not isinstance(info.value, ServiceUnreachable)  # the CLI would say "start it"
    assert info.value.reason is Reason.DATABASE_UNAVAILABLE
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.message == message
    assert served.servicer.calls > 1  # still retried: the database may be back a moment later


async def test_images_over_the_message_cap_are_refused_before_sending(served: Served) -> None:
    half = MAX_MESSAGE_BYTES // 2 + 5 * 2**18  # two of them: 66.5 MiB
    async with FindLoraClient(served.address, timeout=10) as client:
        with pytest.raises(ServiceCallError) as info:
            await client.search([QueryImage(b"\0" * half), QueryImage(b"\0" * half)])
    assert info.value.reason is Reason.INVALID_ARGUMENT  # not BUSY: a retry cannot succeed
    assert info.value.message == "the images add up to 66.5 MiB; the service takes at most 64 MiB per request"
    assert served.servicer.calls == 0


async def test_grpcs_own_size_refusal_is_not_busy() -> None:
    """A service whose cap is lower than the client's: gRPC refuses with RESOURCE_EXHAUSTED and no
    reason, which the client read as BUSY (retry)."""
    server, served = await serve([("grpc.max_receive_message_length", 1000)])
    try:
        async with FindLoraClient(served.address, timeout=10) as client:
            with pytest.raises(ServiceCallError) as info:
                await client.search([QueryImage(b"\0" * 2000)])
    finally:
        await server.stop(0)
    assert info.value.reason is Reason.INVALID_ARGUMENT
    assert "larger than" in info.value.message


async def test_a_wrong_service_ca_is_named_in_the_error(tmp_path: Path) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    credentials = grpc.ssl_server_credentials([(issued.private_key_pem.bytes(), chain)])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        tls = ClientTls(ca=stranger.cert_pem.bytes())
        async with FindLoraClient(f"127.0.0.1:{port}", timeout=3, tls=tls) as client:
            with pytest.raises(ServiceUnreachable) as info:  # the bots' "not reachable" still holds
                await client.health(timeout=3)
    finally:
        await server.stop(0)
    assert "TLS handshake" in info.value.message
    assert "FINDLORA_SERVICE_CA" in info.value.message


def test_a_service_ca_that_is_no_certificate_is_refused_before_dialling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(OSError, match="FINDLORA_SERVICE_CA") as info:
        access(monkeypatch, FINDLORA_SERVICE_CA=str(path)).client_tls()
    assert str(path) in str(info.value)
