"""`bench e2e`: /findlora as the bot sees it, from the bot core's call to the rendered answer.

One process runs all three parts for real: a catalog (lab.bench.load) in a scratch database whose
references point at real WebP thumbnails in the service's blob store; the inference service
(start_service: the shipped style encoder on CPU, the configured decode pool and batching) on that
database; and the bot core (bot.core.search_flow.run_search, what both bots call for /findlora)
with the Discord bot's services, calling it over gRPC. Only the attachment CDN is faked
(httpx.MockTransport), as in the bot tests.

Query images are real PNGs (512 px, the demo's procedural style zoo) sent as the bot sends an
attachment: the downloaded bytes, unchanged. Each search's stages come from the service's
`server-timing` trailer (inference_service.timing).

The catalog lives where the real encoder's embeddings live (lab.bench.synthetic.AnchoredCatalog):
the zoo's reference images (never its query images) are embedded by the encoder the service loads;
one LoRA per zoo style carries its style's real reference embeddings, and the other N - styles are
synthetic lookalike families around the real style centroids (displaced by the measured spread
between them, references drawn with the measured within-style spread, unit vectors). So a real
query of style X finds style X's real LoRA and its synthetic lookalikes near it, as in a real
deployment, and the walk prunes as it would there. The report says how often each search's own
style's real LoRA is on the page (a check that the alignment holds) and how many candidates each
search walked and scored exactly.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg import sql
from pydantic import SecretStr

from bot.core.attachments import AttachmentInfo
from bot.core.rendering import ResultsPage, contact_sheet
from bot.core.search_flow import SearchAsk, run_search
from bot.discord.bot import BotServices
from bot.discord.config import DiscordSettings
from db.clients import Role, create_client, roles_up_to
from findlora_client import CallTiming, collect_server_timing
from findlora_client.credentials import connect
from findlora_client.timing import TOTAL
from inference_service.blobs import BlobStore
from inference_service.config import Settings
from inference_service.imaging import load_image_file, thumbnail_webp
from inference_service.models.style_encoder import StyleEmbedder, resolve_encoder
from inference_service.server import RunningService, start_service
from lab.bench.load import draw_metadata, load_catalog
from lab.bench.search_bench import SERVER_FACTS_SQL, server_facts
from lab.bench.synthetic import AnchoredCatalog
from lab.zoo.style_zoo import generate_zoo, load_rgb, read_queries, read_zoo_info

ZOO_SEED = 7  # the demo's
MULTI_IMAGES = 4
WARMUP_SEARCHES = 3
CDN = "https://cdn.discordapp.com/attachments/0/0/"
# Server stages in the order a search runs them (inference_service.timing).
STAGES = ("decode", "check", "encode", "walk", "rerank", "store", "references", "thumbnails")
NOTE = (
    "Anchored catalog (lab.bench.synthetic.AnchoredCatalog): the zoo's reference images (not its "
    "query images) embedded by the service's own style encoder; one LoRA per zoo style carries its "
    "style's real reference embeddings, the rest are synthetic lookalike families around the real "
    "style centroids (displacements scaled from the measured spread between them, references with "
    "the measured within-style spread, unit vectors): see catalog. own_style: how often the query's "
    "style's real LoRA is on the page (top_k) and first. Every reference points at one of the real "
    "WebP thumbnails listed under thumbnails."
)


@dataclass(frozen=True)
class ZooSpec:
    """The query and thumbnail source: a demo-split procedural zoo at the size of a typical upload."""

    styles: int = 16
    samples: int = 12  # references per style: styles x samples real thumbnails
    queries_per_style: int = 10  # distinct single images and distinct 4-image sets
    px: int = 512

    @property
    def queries(self) -> int:
        return self.styles * self.queries_per_style


def ensure_zoo(root: Path, spec: ZooSpec) -> Path:
    """The zoo, generated once into `root` (about 20 s at the default spec) and reused."""
    if (root / "zoo.json").exists():
        zoo = read_zoo_info(root)
        made = (zoo.get("n_styles"), zoo.get("n_samples"), zoo.get("size"), len(read_queries(root)))
        if made == (spec.styles, spec.samples, spec.px, spec.queries):
            return root
    generate_zoo(
        root,
        n_styles=spec.styles,
        n_samples=spec.samples,
        split="demo",
        seed=ZOO_SEED,
        n_queries=spec.queries,
        size=spec.px,
        progress=False,
    )
    return root


def reference_paths(zoo: Path) -> dict[str, list[Path]]:
    """The zoo's reference images by style slug (the queries' slugs)."""
    styles = sorted(p for p in (zoo / "loras").iterdir() if p.is_dir())
    return {style.name: sorted((style / "references").glob("*.png")) for style in styles}


@dataclass(frozen=True)
class Anchors:
    """The zoo's references as the service's encoder embeds them: what the catalog is built around."""

    styles: list[str]
    embeddings: list[np.ndarray]  # per style, (references, dim) unit float32
    encoder: str


def embed_references(zoo: Path, settings: Settings) -> Anchors:
    """Embed the zoo's references with the encoder the service loads (resolve_encoder on the same
    settings), decoded as the importer decodes files."""
    model, label = resolve_encoder(settings.style_encoder, settings.device)
    embedder = StyleEmbedder(model, label, settings.device)
    by_style = reference_paths(zoo)
    embeddings = [embedder.embed([load_image_file(p) for p in paths]) for paths in by_style.values()]
    return Anchors(list(by_style), embeddings, label)


def store_thumbnails(zoo: Path, blobs: BlobStore, px: int) -> list[str]:
    """Thumbnails of the zoo's references, made as the importer makes them; their blob keys."""
    keys = {
        blobs.put(thumbnail_webp(load_rgb(path), px), ".webp")
        for path in sorted((zoo / "loras").glob("*/references/*.png"))
    }
    return sorted(keys)


def point_references_at(url: str, keys: Sequence[str]) -> None:
    """Before the load: every reference row written gets one of `keys` as its thumbnail (a
    trigger, so the bulk COPY stays one pass; dropped by `stop_pointing`)."""
    pick = sql.SQL("(ARRAY[{keys}]::text[])[1 + abs(hashtext(NEW.lora_id::text || NEW.sample_id) % {n})]")
    body = pick.format(keys=sql.SQL(", ").join(sql.Literal(k) for k in keys), n=sql.Literal(len(keys)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION bench_e2e_thumbnail() RETURNS trigger LANGUAGE plpgsql AS $fn$"
                " BEGIN NEW.thumb_key := {pick}; NEW.blob_key := NEW.thumb_key; RETURN NEW; END $fn$"
            ).format(pick=body)
        )
        conn.execute(
            "CREATE TRIGGER bench_e2e_thumbnail BEFORE INSERT ON reference_images"
            " FOR EACH ROW EXECUTE FUNCTION bench_e2e_thumbnail()"
        )


def read_server_facts(url: str) -> dict[str, Any]:
    """The PostgreSQL the figures came from (its cache size matters most), as `bench search` records it."""
    with psycopg.connect(url) as conn:
        row = conn.execute(SERVER_FACTS_SQL).fetchone()
    assert row is not None
    return server_facts(row)


def stop_pointing(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER bench_e2e_thumbnail ON reference_images")
        conn.execute("DROP FUNCTION bench_e2e_thumbnail()")


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    style: str = ""  # the zoo style that made it ("" for a warm-up image)


def query_sets(zoo: Path, count: int, images: int) -> list[list[Upload]]:
    """`count` queries of `images` images of one style each, styles in turn; distinct image sets
    while the zoo has them, repeating after."""
    by_style: dict[str, list[Path]] = defaultdict(list)
    for query in read_queries(zoo):
        by_style[query.slug].append(query.path)
    styles = sorted(by_style)
    sets = []
    for j in range(count):
        pool = by_style[styles[j % len(styles)]]
        start = (j // len(styles)) * images
        paths = [pool[(start + i) % len(pool)] for i in range(images)]
        sets.append([Upload(p.name, p.read_bytes(), styles[j % len(styles)]) for p in paths])
    return sets


@dataclass
class BotReplies:
    """What a chat adapter does with the answer, minus posting it: the contact sheet of each
    result (both bots build one per card before they send)."""

    page: ResultsPage | None = None
    said: list[str] = field(default_factory=list)
    sheets_s: float = 0.0

    async def started(self) -> None:
        return None

    async def say(self, text: str) -> None:
        self.said.append(text)

    async def show(self, page: ResultsPage) -> None:
        self.page = page
        started = time.perf_counter()
        for card in page.cards:
            contact_sheet(card.transfers)
        self.sheets_s = time.perf_counter() - started


@dataclass(frozen=True)
class Timed:
    kind: str
    answer_ms: float  # run_search called -> the page handed to the chat adapter
    sheets_ms: float  # the adapter's contact sheets of that page
    server: CallTiming
    results: int
    thumbnails: int
    own_rank: int | None  # rank of the query style's real LoRA on the page; None when absent


class BotSide:
    """The Discord bot's services (real client, real limits) with a fake attachment CDN."""

    def __init__(self, address: str, token: str) -> None:
        self.cdn: dict[str, bytes] = {}
        self.settings = DiscordSettings(
            service=address, service_token=SecretStr(token), searches_per_minute=1000, _env_file=None
        )

        def serve(request: httpx.Request) -> httpx.Response:
            body = self.cdn.get(str(request.url))
            return httpx.Response(200, content=body) if body is not None else httpx.Response(404)

        http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
        client = connect(self.settings, address, timeout=self.settings.call_timeout_s)
        self.services = BotServices.create(self.settings, client, http)
        self.searches = 0

    def attach(self, upload: Upload) -> AttachmentInfo:
        url = f"{CDN}{len(self.cdn)}/{upload.name}"
        self.cdn[url] = upload.data
        return AttachmentInfo(url, upload.name, "image/png", len(upload.data))

    async def search(self, kind: str, uploads: Sequence[Upload], own_slug: str = "") -> Timed:
        """One /findlora; `own_slug`: the catalog slug of the query style's real LoRA."""
        self.searches += 1
        ask = SearchAsk(
            user=f"bench-user-{self.searches}",  # one search each: no rate limit is reached
            images=[self.attach(u) for u in uploads],
            top_k=self.settings.default_top_k,
            allow_nsfw=True,
        )
        replies = BotReplies()
        with collect_server_timing() as calls:
            started = time.perf_counter()
            await run_search(ask, self.services, replies)
            elapsed = time.perf_counter() - started
        if replies.page is None:
            raise RuntimeError(f"the search was refused: {' '.join(replies.said)}")
        slugs = [card.slug for card in replies.page.cards]
        return Timed(
            kind,
            (elapsed - replies.sheets_s) * 1000.0,
            replies.sheets_s * 1000.0,
            calls[-1],
            len(replies.page.cards),
            sum(len(card.transfers) for card in replies.page.cards),
            slugs.index(own_slug) + 1 if own_slug in slugs else None,
        )

    async def close(self) -> None:
        await self.services.close()


async def _bot_token(service: RunningService) -> str:
    async with service.runtime.db.connection() as conn:
        issued = await create_client(
            conn, "bench-e2e-bot", roles_up_to(Role.SEARCH), actor="bench e2e", client=None
        )
    return issued.token


async def run_e2e_bench(
    url: str,
    *,
    data_dir: Path,
    zoo_dir: Path,
    n_loras: int,
    n_refs: int = 30,
    n_queries: int = 40,
    seed: int = 0,
    zoo_spec: ZooSpec = ZooSpec(),
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
) -> dict[str, Any]:
    """Load the catalog into `url` (a migrated, empty scratch database), serve it from `data_dir`
    and time `n_queries` single-image and as many 4-image searches through the bot core."""
    settings = Settings(data_dir=data_dir, database_url=url, rate_limit_client_per_s=0)  # one fast bot
    zoo = await asyncio.to_thread(ensure_zoo, zoo_dir, zoo_spec)
    keys = await asyncio.to_thread(store_thumbnails, zoo, BlobStore(settings.blob_dir), settings.thumbnail_px)
    anchors = await asyncio.to_thread(embed_references, zoo, settings)
    catalog = AnchoredCatalog(n_loras, anchors.embeddings, seed=seed)
    # The real LoRAs stay searchable (the metadata takes down about 1 % of LoRAs at random).
    meta = draw_metadata(n_loras, seed)
    meta.active[catalog.anchor_index] = True
    own_slug = {s: f"syn-{i:07d}" for s, i in zip(anchors.styles, catalog.anchor_index.tolist(), strict=True)}
    loaded_so_far = 0

    def on_chunk(count: int) -> None:
        nonlocal loaded_so_far
        loaded_so_far += count
        progress("load", loaded_so_far, n_loras)

    await asyncio.to_thread(point_references_at, url, keys)
    loaded = await load_catalog(url, catalog, n_refs, seed=seed, progress=on_chunk, meta=meta)
    await asyncio.to_thread(stop_pointing, url)
    server = await asyncio.to_thread(read_server_facts, url)

    single = query_sets(zoo, n_queries, 1)
    multi = query_sets(zoo, n_queries, MULTI_IMAGES)
    warmup = [[Upload(p.name, p.read_bytes())] for p in sorted((zoo / "samples").glob("*.png"))]
    service = await start_service(settings, "127.0.0.1:0")
    try:
        index_wait_s = await _memory_index_ready(service)
        bot = BotSide(f"127.0.0.1:{service.port}", await _bot_token(service))
        try:
            # Warm the encoder, the plans and the pool on images that are no query.
            for uploads in warmup[:WARMUP_SEARCHES]:
                await bot.search("warmup", uploads)
            timed: list[Timed] = []
            for j in range(n_queries):  # the two kinds alternate, so background load hits both
                timed.append(await bot.search("single", single[j], own_slug[single[j][0].style]))
                timed.append(await bot.search("multi", multi[j], own_slug[multi[j][0].style]))
                progress("searches", j + 1, n_queries)
        finally:
            await bot.close()
        encoder, top_k = service.runtime.embedder.label, bot.settings.default_top_k
    finally:
        await service.stop(0.5)
    if encoder != anchors.encoder:
        raise RuntimeError(f"the catalog was built with {anchors.encoder} but the service runs {encoder}")
    report = _report(n_loras, n_refs, top_k, settings, encoder, loaded, keys, zoo_spec, single, timed)
    report["service"]["memory_index_ready_after_s"] = index_wait_s
    described = {"kind": "anchored", **catalog.describe(n_refs), "styles": anchors.styles}
    return {**report, "catalog": described, "server": server}


async def _memory_index_ready(service: RunningService) -> float | None:
    """Seconds the service's in-memory centroid index took to be ready after start (searches
    walk pgvector until then, so the timed ones wait for it: the steady state); None without one.
    Raises if it failed to build: the run would time the fallback, not the service."""
    index = service.engine.centroid_index if service.engine is not None else None
    if index is None:
        return None
    started = time.perf_counter()
    await index.wait_ready()
    if not index.ready:
        raise RuntimeError("the service's memory index did not build; its log says why")
    return round(time.perf_counter() - started, 2)


def _ms(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "mean_ms": round(float(arr.mean()), 2),
    }


def _kind(rows: Sequence[Timed]) -> dict[str, Any]:
    """Latency of one kind of search, and the share of the bot's wait each stage takes (sum of
    the stage over sum of the waits: shares add up to 1 with `other`)."""
    answer = [r.answer_ms for r in rows]
    server_total = [r.server.timing.durations_ms[TOTAL] for r in rows]
    waited = float(np.sum(answer))
    stages: dict[str, dict[str, float]] = {}
    parts: dict[str, list[float]] = {
        name: [r.server.timing.durations_ms.get(name, 0.0) for r in rows] for name in STAGES
    }
    parts["other_server"] = [
        total - sum(r.server.timing.durations_ms.get(n, 0.0) for n in STAGES)
        for r, total in zip(rows, server_total, strict=True)
    ]
    # The bot's own work (attachment fetch and header check, answer rendering) and gRPC transport.
    parts["bot_and_transport"] = [a - s for a, s in zip(answer, server_total, strict=True)]
    for name, values in parts.items():
        stages[name] = {**_ms(values), "share": round(float(np.sum(values)) / waited, 4)}
    candidates = [r.server.timing.counts.get("candidates", 0) for r in rows]
    scored = [r.server.timing.counts.get("scored", 0) for r in rows]
    return {
        "searches": len(rows),
        "answer": _ms(answer),
        "server_total": _ms(server_total),
        "stages": stages,
        "contact_sheets": _ms([r.sheets_ms for r in rows]),
        "answer_with_contact_sheets": _ms([r.answer_ms + r.sheets_ms for r in rows]),
        "candidates": {"median": float(np.median(candidates)), "p95": float(np.percentile(candidates, 95))},
        "scored": {"median": float(np.median(scored)), "p95": float(np.percentile(scored, 95))},
        "own_style": {
            "on_page": round(float(np.mean([r.own_rank is not None for r in rows])), 4),
            "first": round(float(np.mean([r.own_rank == 1 for r in rows])), 4),
        },
        "results_median": float(np.median([r.results for r in rows])),
        "thumbnails_median": float(np.median([r.thumbnails for r in rows])),
    }


def _report(
    n_loras: int,
    n_refs: int,
    top_k: int,
    settings: Settings,
    encoder: str,
    loaded: Any,
    keys: Sequence[str],
    zoo_spec: ZooSpec,
    single: Sequence[Sequence[Upload]],
    timed: Sequence[Timed],
) -> dict[str, Any]:
    sizes = [len(u.data) for uploads in single for u in uploads]
    return {
        "bench": "e2e",
        "n_loras": n_loras,
        "n_refs": n_refs,
        "reference_vectors": n_loras * n_refs,
        "queries_per_kind": len(timed) // 2,
        "top_k": top_k,
        "single": _kind([r for r in timed if r.kind == "single"]),
        "multi": {"images": MULTI_IMAGES, **_kind([r for r in timed if r.kind == "multi"])},
        "query_images": {
            "px": zoo_spec.px,
            "format": "PNG",
            "mean_bytes": int(np.mean(sizes)),
            "distinct": zoo_spec.queries,
        },
        "thumbnails": {"distinct_blobs": len(keys), "format": "WebP", "max_px": settings.thumbnail_px},
        "encoder": encoder,
        "service": {
            "device": settings.device,
            "dynamic_batching": settings.dynamic_batching,
            "batch_max_wait_ms": settings.batch_max_wait_ms,
            "decode_workers": settings.decode_workers,
            "centroid_index": settings.centroid_index,
            "ef_search": settings.search_ef_search,
            "memory_ef_search": settings.search_memory_ef_search,
            "exact_below": settings.search_exact_below,
            "transfers_per_match": settings.transfers_per_match,
        },
        "stages": list(STAGES),
        "note": NOTE,
        "load_s": round(loaded.load_s, 2),
        "index_build_s": round(loaded.index_build_s, 2),
        "cpus": os.cpu_count(),
    }


TABLE_STAGES = ("decode", "encode", "walk", "rerank", "store", "references", "thumbnails")


def markdown_rows(result: dict[str, Any]) -> list[str]:
    """The rows of docs/benchmarks-search.md's end-to-end table for one run: per stage its p50 in
    ms and its share of the whole wait."""

    def cell(stage: dict[str, float]) -> str:
        return f"{stage['p50_ms']:.1f} · {stage['share']:.0%}"

    rows = []
    for kind, label in (("single", "1 image"), ("multi", f"{MULTI_IMAGES} images")):
        report = result[kind]
        stages = report["stages"]
        rest = {
            "p50_ms": stages["check"]["p50_ms"] + stages["other_server"]["p50_ms"],
            "share": stages["check"]["share"] + stages["other_server"]["share"],
        }
        cells = [
            f"{result['n_loras']:,}",
            label,
            f"{report['answer']['p50_ms']:.0f} / {report['answer']['p95_ms']:.0f}",
            *(cell(stages[name]) for name in TABLE_STAGES),
            cell(rest),
            cell(stages["bot_and_transport"]),
            f"{report['candidates']['median']:,.0f} / {report['scored']['median']:,.0f}",
            f"{report['contact_sheets']['p50_ms']:.0f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows
