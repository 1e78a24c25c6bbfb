"""A real inference service on port 0 over a small imported catalog, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from inference_service.catalog.format import LoraEntry, lora_toml
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import RunningService, start_service
from tests.helpers.catalogs import write_catalog


@dataclass(frozen=True)
class ServedCatalog:
    service: RunningService
    catalog: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

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
        await import_catalog(catalog, runtime.repo, runtime.blobs, runtime.embedder)
    finally:
        await runtime.close()
    service = await start_service(settings, "127.0.0.1:0")
    try:
        yield ServedCatalog(service, catalog)
    finally:
        await service.stop(0)
