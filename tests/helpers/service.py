"""A real inference service on port 0 over a small imported catalog, for end-to-end tests, and
client tokens for it (every RPC but health needs one)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from db.clients import Role, create_client, roles_up_to
from findlora_client import FindLoraClient
from inference_service.catalog.format import LoraEntry, lora_toml
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import RunningService, start_service
from tests.helpers.catalogs import write_catalog


async def issue_token_in(conn: AsyncConnection[Any], role: Role | None, name: str = "") -> str:
    """The token of a new client holding `role` and every role below it (None: no role at all)."""
    name = name or f"test-{role or 'norole'}-{uuid.uuid4().hex[:8]}"
    roles = () if role is None else roles_up_to(role)
    issued = await create_client(conn, name, roles, actor="test", client=None)
    return issued.token


async def issue_token(service: RunningService, role: Role | None, name: str = "") -> str:
    async with service.runtime.db.connection() as conn:
        return await issue_token_in(conn, role, name)


def service_client(service: RunningService, token: str | None, timeout: float = 30.0) -> FindLoraClient:
    return FindLoraClient(f"127.0.0.1:{service.port}", timeout=timeout, token=token)


@dataclass(frozen=True)
class ServedCatalog:
    service: RunningService
    catalog: Path
    tokens: dict[Role, str] = field(default_factory=dict, repr=False)  # one client per role

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    def client(self, role: Role, timeout: float = 30.0) -> FindLoraClient:
        return service_client(self.service, self.tokens[role], timeout)

    def reference_bytes(self, slug: str, sample_id: str = "s00") -> bytes:
        """A reference image of one LoRA: the most recognisable query for that style."""
        return (self.catalog / "loras" / slug / "references" / f"{sample_id}.png").read_bytes()


def mark_nsfw(catalog: Path, slug: str, style: int) -> None:
    entry = LoraEntry(
        slug=slug,
        name=f"Style {style}",
        url=f"https://example.org/{slug}",
        trigger_words=[f"trig{style}"],
        nsfw=True,
    )
    (catalog / "loras" / slug / "lora.toml").write_text(lora_toml(entry))


@asynccontextmanager
async def served_catalog(
    settings: Settings, root: Path, *, n_loras: int = 6, n_samples: int = 4, nsfw: Sequence[int] = ()
) -> AsyncIterator[ServedCatalog]:
    catalog = write_catalog(root / "catalog", n_loras, n_samples)
    for style in nsfw:
        mark_nsfw(catalog, f"style-{style:02d}", style)
    runtime = await open_runtime(settings)
    try:
        await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
    finally:
        await runtime.close()
    service = await start_service(settings, "127.0.0.1:0")
    try:
        tokens = {role: await issue_token(service, role, f"test-{role}") for role in Role}
        yield ServedCatalog(service, catalog, tokens)
    finally:
        await service.stop(0)
