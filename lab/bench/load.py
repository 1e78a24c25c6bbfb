"""Bulk-load a synthetic catalog into a migrated database: binary COPY, HNSW built afterwards.

The storage layout is a choice of column types for the vectors: `product` keeps what the
migrations define; the others alter the (still empty) columns before the load. The loader reads
the columns' actual types, so it writes what the database holds (float32 for `vector`, float16
for `halfvec`) before and after a migration changes them.
"""

from __future__ import annotations

import re
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

REFERENCES = ("reference_images", "embedding")
CENTROIDS = ("lora_style_summary", "centroid")
CENTROID_INDEX = "lora_style_summary_centroid"
# Column types each layout sets before the load; a column not named keeps its migrated type.
LAYOUTS: dict[str, dict[tuple[str, str], str]] = {
    "product": {},
    "halfvec": {REFERENCES: "halfvec(128)"},
    "float32": {REFERENCES: "vector(128)"},
    "halfvec-centroids": {REFERENCES: "halfvec(128)", CENTROIDS: "halfvec(128)"},
}
# The HNSW build is fast only while its whole graph fits maintenance_work_mem: about 1.6 kB per
# 128-d centroid at m 32 (the vector and 2m neighbour slots at level 0), so 1 GB up to ~600k
# LoRAs and more beyond. A larger server setting is never lowered.
INDEX_BUILD_MEMORY_MB = 1024
INDEX_BUILD_BYTES_PER_LORA = 2048


@dataclass(frozen=True)
class CatalogMeta:
    """What a LoRA row says besides its vectors: drawn before any load, so the queries (which
    filter on it) and the exact truth exist before a database does."""

    base_model: list[str]
    nsfw: np.ndarray
    active: np.ndarray


def draw_metadata(n_loras: int, seed: int) -> CatalogMeta:
    rng = np.random.default_rng(seed + 7)
    base = [BASE_MODELS[i] for i in rng.choice(len(BASE_MODELS), n_loras, p=BASE_WEIGHTS)]
    nsfw = rng.random(n_loras) < NSFW_FRACTION
    active = rng.random(n_loras) >= TAKEN_DOWN_FRACTION
    return CatalogMeta(base, nsfw, active)


@dataclass(frozen=True)
class LoadedCatalog:
    lora_ids: np.ndarray  # database id of synthetic LoRA i
    base_model: list[str]
    nsfw: np.ndarray
    active: np.ndarray
    load_s: float
    index_build_s: float
    sizes_mb: dict[str, float]
    layout: str = "product"
    column_types: dict[str, str] | None = None  # "table.column" -> format_type after the load
    index_build_memory: str = ""

    def index_of(self, lora_ids: list[int]) -> list[int]:
        """Synthetic indices of database ids (ids follow the slugs' order)."""
        return np.searchsorted(self.lora_ids, lora_ids).tolist()  # type: ignore[no-any-return]


async def load_catalog(
    url: str,
    catalog: SyntheticCatalog,
    n_refs: int,
    *,
    seed: int,
    progress: Callable[[int], None],
    meta: CatalogMeta | None = None,
    layout: str = "product",
    centroid_hnsw: bool = True,
) -> LoadedCatalog:
    """Write n_loras LoRAs with n_refs references each in `layout`; `progress(n)` after each
    chunk of LoRAs. `meta` defaults to draw_metadata(n_loras, seed). Without `centroid_hnsw`
    pgvector's centroid index is left unbuilt (a run that only times the service's in-memory
    index: at 1M LoRAs the build takes a quarter of an hour)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    meta = meta or draw_metadata(catalog.n_loras, seed)
    n = catalog.n_loras
    sample_ids = [f"s{i:03d}" for i in range(n_refs)]
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        # Building the index once after the load is far faster than maintaining it row by row;
        # it is rebuilt as the migrations define it (opclass following the centroid's type).
        cur = await conn.execute("SELECT pg_get_indexdef(%s::regclass)", (CENTROID_INDEX,))
        found = await cur.fetchone()
        assert found is not None
        index_sql = str(found[0])
        await conn.execute(f"DROP INDEX {CENTROID_INDEX}")
        for (table, column), wanted in LAYOUTS[layout].items():
            if await _column_type(conn, table, column) != wanted:
                await conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {wanted}")
        await conn.commit()
        # Registered after the alterations so halfvec is known even where only a layout uses it.
        await register_vector_async(conn)
        types = {f"{t}.{c}": await _column_type(conn, t, c) for t, c in (REFERENCES, CENTROIDS)}
        ref_type, centroid_type = (_base_type(types[f"{t}.{c}"]) for t, c in (REFERENCES, CENTROIDS))
        index_sql = re.sub(r"\b(vector|halfvec)_l2_ops\b", f"{centroid_type}_l2_ops", index_sql)
        async with conn.cursor() as cur:
            async with cur.copy("COPY samples (id, blob_key, sha256) FROM STDIN") as copy:
                for sid in sample_ids:
                    await copy.write_row((sid, f"samples/{sid}", ""))
            async with cur.copy("COPY loras (slug, name, base_model, nsfw, status) FROM STDIN") as copy:
                for i in range(n):
                    status = "active" if meta.active[i] else "taken_down"
                    await copy.write_row(
                        (f"syn-{i:07d}", f"Synthetic {i}", meta.base_model[i], bool(meta.nsfw[i]), status)
                    )
            await cur.execute("SELECT id FROM loras WHERE slug LIKE 'syn-%%' ORDER BY slug")
            ids = np.array([r[0] for r in await cur.fetchall()], dtype=np.int64)
            if len(ids) != n or not bool(np.all(np.diff(ids) > 0)):
                raise RuntimeError("load into an empty catalog: LoRA ids must follow the slugs' order")
            for start, refs in catalog.iter_references(n_refs):
                chunk_ids = ids[start : start + len(refs)]
                await _copy_chunk(cur, chunk_ids, sample_ids, refs, ref_type, centroid_type)
                progress(len(refs))
        await conn.commit()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        index_memory = f"{max(INDEX_BUILD_MEMORY_MB, n * INDEX_BUILD_BYTES_PER_LORA // 2**20)}MB"
        cur = await conn.execute(
            "SELECT set_config('maintenance_work_mem', CASE WHEN pg_size_bytes(current_setting("
            "'maintenance_work_mem')) < pg_size_bytes(%(m)s) THEN %(m)s"
            " ELSE current_setting('maintenance_work_mem') END, false)",
            {"m": index_memory},
        )
        memory = await cur.fetchone()
        if centroid_hnsw:
            await conn.execute(index_sql.encode())
        await conn.commit()
        index_build_s = time.perf_counter() - started
        await conn.execute("ANALYZE loras, reference_images, lora_style_summary")
        await conn.commit()
        sizes = {}
        relations = ("loras", "reference_images", "lora_style_summary") + (
            (CENTROID_INDEX,) if centroid_hnsw else ()
        )
        for rel in relations:
            cur2 = await conn.execute("SELECT pg_total_relation_size(%s::regclass)", (rel,))
            row = await cur2.fetchone()
            sizes[rel] = round(int(row[0]) / 2**20, 1) if row else 0.0
    return LoadedCatalog(
        ids,
        meta.base_model,
        meta.nsfw,
        meta.active,
        load_s,
        index_build_s,
        sizes,
        layout=layout,
        column_types=types,
        index_build_memory=str(memory[0]) if memory else "",
    )


async def _column_type(conn: psycopg.AsyncConnection[tuple[object, ...]], table: str, column: str) -> str:
    cur = await conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped",
        (table, column),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"{table}.{column} does not exist")
    return str(row[0])


def _base_type(formatted: str) -> str:
    """'halfvec(128)' -> 'halfvec'; only the two dense pgvector types are loadable."""
    base = formatted.split("(")[0]
    if base not in ("vector", "halfvec"):
        raise ValueError(f"cannot load vectors into a {formatted} column")
    return base


def stored(refs: np.ndarray, column_type: str) -> np.ndarray:
    """The float32 values a column of `column_type` gives back for `refs`."""
    return refs.astype(np.float16).astype(np.float32) if column_type == "halfvec" else refs


def _dumpable(vectors: np.ndarray, column_type: str) -> list[object]:
    if column_type == "halfvec":
        return [HalfVector(v) for v in vectors]
    return list(vectors.astype(np.float32, copy=False))


async def _copy_chunk(
    cur: psycopg.AsyncCursor[tuple[object, ...]],
    ids: np.ndarray,
    sample_ids: list[str],
    refs: np.ndarray,
    ref_type: str,
    centroid_type: str,
) -> None:
    async with cur.copy(
        "COPY reference_images (lora_id, sample_id, blob_key, thumb_key, sha256, embedding, kept,"
        " transfer_mse) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "text", "text", "text", ref_type, "bool", "float4"])
        for lora_id, lora_refs in zip(ids.tolist(), refs, strict=True):
            for sid, emb in zip(sample_ids, _dumpable(lora_refs, ref_type), strict=True):
                await copy.write_row((lora_id, sid, "", "", "", emb, True, 1.0))
    # The summary describes the references as stored: the centroid bound holds for them.
    centroids, radius, sq_radius = summarise(stored(refs, ref_type))
    async with cur.copy(
        "COPY lora_style_summary (lora_id, centroid, mean_radius, mean_sq_radius, n_refs)"
        " FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", centroid_type, "float4", "float4", "int4"])
        rows = zip(
            ids.tolist(),
            _dumpable(centroids, centroid_type),
            radius.tolist(),
            sq_radius.tolist(),
            strict=True,
        )
        for row in rows:
            await copy.write_row((*row, refs.shape[1]))
