"""TLS and mutual TLS on the gRPC port, with certificates from a throw-away CA (trustme)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from pydantic import SecretStr

from bot.discord.config import DiscordSettings
from db.clients import Role
from findlora_client import ClientTls, FindLoraClient, ServiceCallError, ServiceUnreachable
from findlora_client.credentials import connect
from inference_service.config import Settings
from inference_service.server import RunningService, start_service
from inference_service.tls import TlsConfigError, server_credentials
from tests.helpers.service import issue_token

pytestmark = pytest.mark.db


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # trusted by nobody here


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("discord-bot.findlora.test")
    files = {
        "ca": ca.cert_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "key": server.private_key_pem.bytes(),
        "client_cert": b"".join(blob.bytes() for blob in client.cert_chain_pems),
        "client_key": client.private_key_pem.bytes(),
        "other_ca": stranger.cert_pem.bytes(),
    }
    for name, data in files.items():
        (root / f"{name}.pem").write_bytes(data)
    return Pki(**{name: root / f"{name}.pem" for name in files})


def tls(pki: Pki, *, ca: Path | None = None, mutual: bool = False) -> ClientTls:
    return ClientTls(
        ca=(ca or pki.ca).read_bytes(),
        cert=pki.client_cert.read_bytes() if mutual else None,
        key=pki.client_key.read_bytes() if mutual else None,
    )


async def tls_service(settings: Settings, pki: Pki, *, mutual: bool) -> RunningService:
    update = {"tls_cert": pki.cert, "tls_key": pki.key, "tls_client_ca": pki.ca if mutual else None}
    return await start_service(settings.model_copy(update=update), "127.0.0.1:0")


@pytest.fixture
async def tls_only(settings: Settings, pki: Pki) -> AsyncIterator[tuple[RunningService, str]]:
    service = await tls_service(settings, pki, mutual=False)
    yield service, await issue_token(service, Role.SEARCH)
    await service.stop(0.5)


@pytest.fixture
async def mutual(settings: Settings, pki: Pki) -> AsyncIterator[tuple[RunningService, str]]:
    service = await tls_service(settings, pki, mutual=True)
    yield service, await issue_token(service, Role.MODERATE)
    await service.stop(0.5)


async def test_tls_port_serves_clients_that_trust_its_ca(
    tls_only: tuple[RunningService, str], pki: Pki
) -> None:
    service, token = tls_only
    address = f"127.0.0.1:{service.port}"
    async with FindLoraClient(address, timeout=5, token=token, tls=tls(pki)) as client:
        assert await client.health() == "SERVING"
        with pytest.raises(ServiceCallError) as answered:  # authenticated over TLS, answered by the servicer
            await client.get_page("00000000-0000-0000-0000-000000000000", 0, 1)
        assert answered.value.message == "no such search: run it again"
    for wrong in (None, tls(pki, ca=pki.other_ca)):  # plaintext, or a CA that did not sign it
        async with FindLoraClient(address, timeout=3, token=token, tls=wrong) as client:
            with pytest.raises(ServiceUnreachable):
                await client.health()


async def test_a_certificate_renewed_in_place_is_served_without_a_restart(
    settings: Settings, pki: Pki, tmp_path: Path
) -> None:
    """cert-manager rewrites the mounted files; the port read them once, so after the old
    certificate expired every handshake failed until the pods restarted."""
    served = tmp_path / "served"
    served.mkdir()
    cert, key = served / "tls.crt", served / "tls.key"
    cert.write_bytes(pki.cert.read_bytes())
    key.write_bytes(pki.key.read_bytes())
    service = await start_service(
        settings.model_copy(update={"tls_cert": cert, "tls_key": key}), "127.0.0.1:0"
    )
    try:
        address = f"127.0.0.1:{service.port}"
        async with FindLoraClient(address, timeout=5, tls=tls(pki)) as client:
            assert await client.health() == "SERVING"
        renewed_by = trustme.CA()  # another CA, so the served certificate is told apart for sure
        renewed = renewed_by.issue_cert("127.0.0.1", "localhost")
        for path, data in (
            (key, renewed.private_key_pem.bytes()),
            (cert, b"".join(blob.bytes() for blob in renewed.cert_chain_pems)),
        ):
            path.with_suffix(".new").write_bytes(data)
            path.with_suffix(".new").replace(path)
        renewed_ca = served / "renewed-ca.pem"
        renewed_ca.write_bytes(renewed_by.cert_pem.bytes())
        async with FindLoraClient(address, timeout=5, tls=tls(pki, ca=renewed_ca)) as client:
            assert await client.health() == "SERVING"
        async with FindLoraClient(address, timeout=3, tls=tls(pki)) as client:
            with pytest.raises(ServiceUnreachable):  # the old certificate is no longer served
                await client.health()
    finally:
        await service.stop(0.5)


async def test_mutual_tls_needs_a_client_certificate(mutual: tuple[RunningService, str], pki: Pki) -> None:
    service, token = mutual
    address = f"127.0.0.1:{service.port}"
    async with FindLoraClient(address, timeout=3, token=token, tls=tls(pki)) as client:
        with pytest.raises(ServiceUnreachable):
            await client.health()
    async with FindLoraClient(address, timeout=5, token=token, tls=tls(pki, mutual=True)) as client:
        assert await client.list_flags() == []
    async with FindLoraClient(address, timeout=5, tls=tls(pki, mutual=True)) as client:
        with pytest.raises(ServiceCallError) as refused:  # a certificate does not replace the token
            await client.list_flags()
        assert refused.value.message.startswith("this service needs a client token")


async def test_a_bot_reaches_a_mutual_tls_service_from_its_settings(
    mutual: tuple[RunningService, str], pki: Pki
) -> None:
    service, token = mutual
    settings = DiscordSettings(
        service=f"127.0.0.1:{service.port}",
        service_token=SecretStr(token),
        service_ca=pki.ca,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
    )
    async with connect(settings, settings.service, timeout=5) as client:
        assert await client.list_flags() == []


def test_half_a_tls_configuration_is_refused_clearly(settings: Settings, pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="set both FINDLORA_TLS_CERT and FINDLORA_TLS_KEY"):
        server_credentials(settings.model_copy(update={"tls_cert": pki.cert}))
    with pytest.raises(TlsConfigError, match="FINDLORA_TLS_CLIENT_CA needs FINDLORA_TLS_CERT"):
        server_credentials(settings.model_copy(update={"tls_client_ca": pki.ca}))
    with pytest.raises(TlsConfigError, match="cannot read FINDLORA_TLS_KEY"):
        server_credentials(
            settings.model_copy(update={"tls_cert": pki.cert, "tls_key": pki.ca.parent / "nope"})
        )
    with pytest.raises(OSError, match="set both FINDLORA_CLIENT_CERT and FINDLORA_CLIENT_KEY"):
        DiscordSettings(client_cert=pki.client_cert).client_tls()
