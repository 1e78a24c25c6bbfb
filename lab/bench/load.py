"""Bulk-load a synthetic catalog into a migrated database: binary COPY, HNSW built afterwards."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector_async

from lab.bench.synthetic import SyntheticCatalog, summarise

BASE_MODELS = ("sd1", "sdxl", "flux")
BASE_WEIGHTS = (0.6, 0.3, 0.1)
NSFW_FRACTION = 0.1
TAKEN_DOWN_FRACTION = 0.01


@dataclass(frozen=True)
class LoadedCatalog:
    lora_ids: np.ndarray  # database id of synthetic LoRA i
    base_model: list[str]
    nsfw: np.ndarray
    active: np.ndarray
    load_s: float
    index_build_s: float
    sizes_mb: dict[str, float]


async def load_catalog(
    url: str, catalog: SyntheticCatalog, n_refs: int, *, seed: int, progress: Callable[[int], None]
) -> LoadedCatalog:
    """Write n_loras LoRAs with n_refs references each; `progress(n)` after each chunk of LoRAs."""
    rng = np.random.default_rng(seed + 7)
    n = catalog.n_loras
    base = [BASE_MODELS[i] for i in rng.choice(len(BASE_MODELS), n, p=BASE_WEIGHTS)]
    nsfw = rng.random(n) < NSFW_FRACTION
    active = rng.random(n) >= TAKEN_DOWN_FRACTION
    sample_ids = [f"s{i:03d}" for i in range(n_refs)]
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await register_vector_async(conn)
        async with conn.cursor() as cur:
            async with cur.copy("COPY samples (id, blob_key, sha256) FROM STDIN") as copy:
                for sid in sample_ids:
                    await copy.write_row((sid, f"samples/{sid}", ""))
            async with cur.copy("COPY loras (slug, name, base_model, nsfw, status) FROM STDIN") as copy:
                for i in range(n):
                    status = "active" if active[i] else "taken_down"
                    await copy.write_row((f"syn-{i:07d}", f"Synthetic {i}", base[i], bool(nsfw[i]), status))
            await cur.execute("SELECT id FROM loras WHERE slug LIKE 'syn-%%' ORDER BY slug")
            ids = np.array([r[0] for r in await cur.fetchall()], dtype=np.int64)
            # Building the index once after the load is far faster than maintaining it row by row;
            # it is rebuilt exactly as the migrations define it.
            await cur.execute("SELECT pg_get_indexdef('lora_style_summary_centroid'::regclass)")
            found = await cur.fetchone()
            assert found is not None
            index_sql = str(found[0])
            await cur.execute("DROP INDEX lora_style_summary_centroid")
            for start, refs in catalog.iter_references(n_refs):
                await _copy_chunk(cur, ids[start : start + len(refs)], sample_ids, refs)
                progress(len(refs))
        await conn.commit()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute(index_sql.encode())
        await conn.commit()
        index_build_s = time.perf_counter() - started
        await conn.execute("ANALYZE loras, reference_images, lora_style_summary")
        await conn.commit()
        sizes = {}
        for rel in ("reference_images", "lora_style_summary", "lora_style_summary_centroid"):
            cur2 = await conn.execute("SELECT pg_total_relation_size(%s::regclass)", (rel,))
            row = await cur2.fetchone()
            sizes[rel] = round(int(row[0]) / 2**20, 1) if row else 0.0
    return LoadedCatalog(ids, base, nsfw, active, load_s, index_build_s, sizes)


async def _copy_chunk(
    cur: psycopg.AsyncCursor[tuple[object, ...]], ids: np.ndarray, sample_ids: list[str], refs: np.ndarray
) -> None:
    async with cur.copy(
        "COPY reference_images (lora_id, sample_id, blob_key, thumb_key, sha256, embedding, kept,"
        " transfer_mse) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "text", "text", "text", "halfvec", "bool", "float4"])
        for lora_id, lora_refs in zip(ids.tolist(), refs, strict=True):
            for sid, emb in zip(sample_ids, lora_refs, strict=True):
                await copy.write_row((lora_id, sid, "", "", "", HalfVector(emb), True, 1.0))
    # The summary of what is stored (half precision), as db.catalog.refresh_style_summary computes it.
    centroids, radius, sq_radius = summarise(refs.astype(np.float16).astype(np.float32))
    async with cur.copy(
        "COPY lora_style_summary (lora_id, centroid, mean_radius, mean_sq_radius, n_refs)"
        " FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "vector", "float4", "float4", "int4"])
        for row in zip(ids.tolist(), centroids, radius.tolist(), sq_radius.tolist(), strict=True):
            await copy.write_row((*row, refs.shape[1]))
