"""The CLI's fallback to the embedded database's `local` token (every role) only for a service on
this machine: an address from a stray `.env` or FINDLORA_SERVICE never receives it."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from findlora.access import is_local_address, service_address, service_client

LOCAL_TOKEN = "fl_local_secret"


@pytest.fixture
def local_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir holding the `local` client's token, no token configured, a clean working dir."""
    for name in ("FINDLORA_TOKEN", "FINDLORA_TOKEN_FILE", "FINDLORA_SERVICE", "FINDLORA_SERVICE_TLS"):
        monkeypatch.delenv(name, raising=False)
    for name in ("FINDLORA_SERVICE_CA", "FINDLORA_CLIENT_CERT", "FINDLORA_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "client-token").write_text(LOCAL_TOKEN + "\n")
    monkeypatch.setenv("FINDLORA_DATA_DIR", str(data_dir))
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


class RecordingHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Answers SERVING and keeps the authorization each call carried."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        self.seen.append(dict(context.invocation_metadata()).get("authorization"))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A unix socket's path must be short (about 100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="fl-") as path:
        yield Path(path)


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[grpc.aio.Server, RecordingHealth]]:
    server = grpc.aio.server()
    recorder = RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(recorder, server)
    yield server, recorder
    await server.stop(0)


@pytest.mark.parametrize("from_dotenv", [False, True], ids=["environment", "dotenv"])
async def test_a_remote_service_is_never_sent_the_local_token(
    local_token: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], from_dotenv: bool
) -> None:
    if from_dotenv:  # an untrusted checkout's .env, where the CLI happens to run
        (local_token / ".env").write_text("FINDLORA_SERVICE=10.0.0.1:1\n")
    else:
        monkeypatch.setenv("FINDLORA_SERVICE", "10.0.0.1:1")
    address = service_address()
    assert address == "10.0.0.1:1"
    with pytest.raises(typer.Exit):
        service_client(address)
    err = capsys.readouterr().err
    assert "the service at 10.0.0.1:1 is not on this machine" in err
    assert "set FINDLORA_TOKEN or FINDLORA_TOKEN_FILE" in err
    assert LOCAL_TOKEN not in err


async def test_a_configured_token_still_goes_to_a_remote_service(
    local_token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINDLORA_TOKEN", "fl_bot_token")
    async with service_client("10.0.0.1:1") as client:  # nothing is dialled until a call
        assert client.address == "10.0.0.1:1"


@pytest.mark.parametrize("scheme", ["127.0.0.1:{port}", "ipv4:127.0.0.1:{port}", "unix:{socket}"])
async def test_a_service_on_this_machine_still_gets_the_local_token(
    local_token: Path,
    short_dir: Path,
    health_server: tuple[grpc.aio.Server, RecordingHealth],
    scheme: str,
) -> None:
    server, recorder = health_server
    socket = short_dir / "findlora.sock"
    port = server.add_insecure_port("127.0.0.1:0")
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    async with service_client(scheme.format(port=port, socket=socket), timeout=5) as client:
        assert await client.health() == "SERVING"
    assert recorder.seen == [f"Bearer {LOCAL_TOKEN}"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:50051",
        "127.8.9.10:1",
        "localhost:50051",
        "LOCALHOST",
        "[::1]:50051",
        "::1",
        "ipv4:127.0.0.1:1,127.0.0.2:1",
        "ipv6:[::1]:50051",
        "dns:///localhost:50051",
        "dns:127.0.0.1:50051",
        "unix:/run/findlora.sock",
        "unix:///run/findlora.sock",
        "unix-abstract:findlora",
    ],
)
def test_loopback_addresses_and_unix_sockets_are_local(address: str) -> None:
    assert is_local_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1:1",
        "inference:50051",
        "findlora-inference.findlora.svc:50051",
        "localhost.example.com:50051",
        "127.0.0.1.nip.io:50051",
        "[::ffff:10.0.0.1]:50051",
        "0.0.0.0:50051",
        "ipv4:127.0.0.1:1,10.0.0.1:1",
        "dns://8.8.8.8/localhost:50051",  # a DNS server of the caller's choosing answers
        "dns:///findlora-inference:50051",
        "",
    ],
)
def test_other_addresses_are_not_local(address: str) -> None:
    assert not is_local_address(address)


def test_a_damaged_local_token_file_is_named_never_shown(
    local_token: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local token file holding bytes no token has (a disk error, an editor's UTF-16) ended
    the CLI in a UnicodeDecodeError traceback."""
    import os

    token_file = Path(os.environ["FINDLORA_DATA_DIR"]) / "client-token"
    token_file.write_bytes(b"fl_local_\xff\xfesecret")
    with pytest.raises(typer.Exit):
        service_client("127.0.0.1:1")
    said = " ".join(capsys.readouterr().err.split())
    assert "client-token is not UTF-8 text" in said
    assert "fl_local_" not in said
