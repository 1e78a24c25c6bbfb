"""`findlora status`, run as a user runs it, against a real service, an empty one and nothing."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import psycopg
import pytest
import trustme
from grpc_health.v1 import health, health_pb2_grpc

from db.clients import Role
from findlora_client import Reason
from findlora_client.protocol import REASON_TRAILER
from inference_service.config import Settings
from inference_service.server import RunningService
from protos import findlora_pb2 as pb
from protos import findlora_pb2_grpc as pb_grpc
from tests.helpers.service import issue_token
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


async def test_status_of_a_running_service_with_a_catalog(
    settings: Settings, service: RunningService
) -> None:
    env = cli_env(settings, FINDLORA_TOKEN=await issue_token(service, Role.SEARCH))
    address = f"127.0.0.1:{service.port}"
    code, out, err = await findlora("status", "--service", address, env=env)
    assert code == 0, out + err
    lines = {line.split()[1]: line for line in out.splitlines() if line.strip()}
    assert set(lines) == {"service", "catalog", "encoder", "database", "queue"}
    assert all(line.startswith("ok") for line in lines.values()), out
    assert f"{address} answers SERVING" in lines["service"]
    assert "searchable LoRA(s) of" in lines["catalog"]
    assert service.runtime.embedder.label in lines["encoder"]
    assert "external PostgreSQL at" in lines["database"]
    assert "0 registration job(s) waiting" in lines["queue"]

    # A job waiting with no worker alive: the queue line says which command takes it.
    with psycopg.connect(str(settings.database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO registration_jobs (id, source_url, metadata, slug)"
            " VALUES (gen_random_uuid(), 'https://civitai.com/x', '{}', 'waiting')"
        )
    code, out, _ = await findlora("status", "--service", address, env=env)
    assert code == 1
    assert "1 registration job(s) waiting" in out
    assert "start one with `findlora serve worker`" in out


async def test_the_service_address_comes_from_a_dotenv_file_too(
    settings: Settings, service: RunningService, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{service.port}"
    (tmp_path / ".env").write_text(f"FINDLORA_SERVICE={address}\n")
    env = cli_env(settings, FINDLORA_TOKEN=await issue_token(service, Role.SEARCH))
    code, out, err = await findlora("status", env=env, cwd=tmp_path)
    assert f"{address} answers SERVING" in out, out + err
    assert code == 0


async def test_status_with_nothing_listening_names_the_command_that_starts_it(
    tmp_path: Path, settings: Settings
) -> None:
    code, out, err = await findlora("status", "--service", "127.0.0.1:9", env=cli_env(settings))
    assert code == 1
    assert "no service at 127.0.0.1:9: start it with `findlora serve inference`" in out
    assert "Traceback" not in out + err


async def test_status_of_an_empty_catalog_says_how_to_fill_it(
    settings: Settings, empty_service: RunningService
) -> None:
    env = cli_env(settings, FINDLORA_TOKEN=await issue_token(empty_service, Role.SEARCH))
    code, out, _ = await findlora("status", "--service", f"127.0.0.1:{empty_service.port}", env=env)
    assert code == 1
    catalog = next(line for line in out.splitlines() if " catalog " in line)
    assert catalog.startswith("fix")
    assert "0 searchable LoRA(s) of 0" in catalog
    assert "`findlora catalog import DIR`" in catalog
    assert "`make demo`" in catalog


async def test_status_without_a_token_says_how_to_get_one(
    settings: Settings, empty_service: RunningService
) -> None:
    code, out, _ = await findlora(
        "status", "--service", f"127.0.0.1:{empty_service.port}", env=cli_env(settings, FINDLORA_TOKEN="")
    )
    assert code == 1
    assert "findlora auth add" in out


class DatabaseDown(pb_grpc.FindLoraServicer):  # type: ignore[misc]
    """A service at the network edge that answers health but refuses its status as the real one
    does when its database is down or slow: a status code with the reason in a trailer."""

    def __init__(self, code: grpc.StatusCode, reason: Reason, message: str) -> None:
        self.code, self.reason, self.message = code, reason, message

    async def ServiceStatus(
        self, request: pb.ServiceStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServiceStatusResponse:
        await context.abort(self.code, self.message, trailing_metadata=((REASON_TRAILER, self.reason),))


async def edge_server(
    servicer: DatabaseDown | None = None, tls: trustme.CA | None = None
) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    if servicer is not None:
        pb_grpc.add_FindLoraServicer_to_server(servicer, server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        issued = tls.issue_cert("127.0.0.1")
        chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
        credentials = grpc.ssl_server_credentials([(issued.private_key_pem.bytes(), chain)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


def edge_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment without a database of its own: only a token for the service."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("FINDLORA_", "DATABASE_URL"))}
    return {**inherited, "FINDLORA_DATA_DIR": str(tmp_path / "data"), "FINDLORA_TOKEN": "t0ken", **extra}


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (grpc.StatusCode.UNAVAILABLE, Reason.DATABASE_UNAVAILABLE, "the catalog database is unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DATABASE_TIMEOUT, "the catalog database took too long"),
    ],
)
async def test_status_puts_a_database_outage_on_the_database_line(
    tmp_path: Path, code: grpc.StatusCode, reason: Reason, message: str
) -> None:
    server, address = await edge_server(DatabaseDown(code, reason, message))
    try:
        status, out, err = await findlora(
            "status", "--service", address, env=edge_env(tmp_path), cwd=tmp_path
        )
    finally:
        await server.stop(0)
    assert status == 1
    lines = {line.split()[1]: line for line in out.splitlines() if line.strip()}
    assert set(lines) == {"service", "database"}, out + err
    assert lines["service"].startswith("ok")
    assert lines["database"].startswith("fix")
    assert message in lines["database"]
    assert "start it" not in out  # the service is there; starting another would not help


async def test_status_with_a_wrong_service_ca_names_the_setting(tmp_path: Path) -> None:
    server, address = await edge_server(tls=trustme.CA())
    stranger = tmp_path / "stranger-ca.pem"
    stranger.write_bytes(trustme.CA().cert_pem.bytes())
    try:
        env = edge_env(tmp_path, FINDLORA_SERVICE_CA=str(stranger))
        status, out, err = await findlora("status", "--service", address, env=env, cwd=tmp_path)
    finally:
        await server.stop(0)
    assert status == 1
    assert out.startswith("fix  service"), out + err
    assert "TLS handshake" in out
    assert "FINDLORA_SERVICE_CA" in out
    assert "start it" not in out


async def test_status_with_a_service_ca_that_is_no_certificate_names_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    env = edge_env(tmp_path, FINDLORA_SERVICE_CA=str(garbage))
    status, out, err = await findlora("status", "--service", "127.0.0.1:9", env=env, cwd=tmp_path)
    assert status == 1
    assert f"FINDLORA_SERVICE_CA ({garbage}) is not a PEM file" in err, out + err
    assert "start it" not in out + err
    assert "Traceback" not in out + err
