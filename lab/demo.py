"""`findlora demo`: a real search, end to end, on a small procedural catalog.

Builds a demo style zoo (parametric styles over photographs that scikit-image ships), imports
it into the embedded database, starts the inference service on a free port, and sends a query
image (content never seen in the catalog, restyled by one of its styles) over gRPC.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from db import catalog
from findlora_client import FindLoraClient, QueryImage
from findlora_client.credentials import ServiceAccess
from inference_service.catalog.format import CatalogError
from inference_service.catalog.importer import import_catalog, reembed
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import start_service
from lab.zoo.style_zoo import ZOO_FILE, Query, generate_zoo, read_queries
from protos import findlora_pb2 as pb

DEMO_STYLES = 16
DEMO_SAMPLES = 12
DEMO_SEED = 7


@dataclass(frozen=True)
class DemoResult:
    query: Query
    response: pb.SearchResponse
    encoder: str


def demo_catalog(data_dir: Path) -> Path:
    """The demo catalog, whole or not at all. It is built beside its place and moved in once
    complete: a run killed halfway (a closed terminal) left a catalog.toml over missing or empty
    images, which every later run refused to import, or imported in part."""
    root = data_dir / "demo-catalog"
    if (root / ZOO_FILE).exists():  # generate_zoo writes zoo.json last
        return root
    building = data_dir / "demo-catalog.partial"
    shutil.rmtree(building, ignore_errors=True)  # what a killed run left
    generate_zoo(
        building,
        n_styles=DEMO_STYLES,
        n_samples=DEMO_SAMPLES,
        split="demo",
        seed=DEMO_SEED,
        n_queries=DEMO_STYLES,
    )
    shutil.rmtree(root, ignore_errors=True)  # an incomplete one from before this fix
    os.replace(building, root)
    return root


async def run_demo(settings: Settings, console: Console, query_index: int = 0) -> DemoResult:
    console.print(f"[bold]1/4[/] demo catalog: {DEMO_STYLES} styles x {DEMO_SAMPLES} samples")
    root = await asyncio.to_thread(demo_catalog, settings.data_dir)
    console.print(f"[bold]2/4[/] importing {root} into the database under {settings.data_dir}")
    async with await open_runtime(settings) as runtime:
        # An encoder this catalog can load (the configured one, or one `catalog adapt` registered)
        # stays; only one it cannot load (a shipped encoder since replaced) is re-embedded away.
        if await runtime.encoders.current_or_none() is None:
            stored = await runtime.db.run(catalog.get_meta, catalog.ENCODER_KEY)
            console.print(
                f"    the style encoder changed ({stored} -> {runtime.embedder.label}): re-embedding"
            )
            await reembed(runtime.db, runtime.blobs, runtime.embedder)
        report = await import_catalog(
            root,
            runtime.db,
            runtime.blobs,
            runtime.encoders,
            cleansing_threshold=settings.cleansing_threshold,
            thumb_px=settings.thumbnail_px,
        )
    console.print(
        f"    {len(report.imported)} imported, {len(report.unchanged)} already there, "
        f"{report.dropped_by_cleansing} reference(s) dropped by cleansing"
    )
    service = await start_service(settings, "127.0.0.1:0")
    try:
        console.print(
            f"[bold]3/4[/] inference service on 127.0.0.1:{service.port} "
            f"(style encoder {service.runtime.embedder.label})"
        )
        queries = read_queries(root)
        if not queries:
            raise CatalogError([f"{root} has no demo queries: remove that folder and run again"])
        query = queries[query_index % len(queries)]
        console.print(
            f"[bold]4/4[/] searching for {query.path.name} (made by {query.slug!r}, "
            "content not in the catalog)"
        )
        # The embedded database's own `local` client; with DATABASE_URL, FINDLORA_TOKEN(_FILE).
        token = service.local_token or ServiceAccess().read_service_token()
        async with FindLoraClient(f"127.0.0.1:{service.port}", token=token) as client:
            response = await client.search([QueryImage(query.path.read_bytes(), query.path.name)], top_k=5)
    finally:
        await service.stop(1.0)
    return DemoResult(query, response, service.runtime.embedder.label)
