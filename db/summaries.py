"""Style summaries as arrays, and what changed after a catalog generation (migration 010): what the
service's in-memory centroid index (inference_service/search/memory_index.py) loads and keeps
current. Each function runs in the caller's transaction: a load, or a search's sync and the
exact scoring after it, must see one snapshot (REPEATABLE READ)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.database import Connection, Database
from db.encoders import ACTIVE_LABEL_SQL, ENCODER_KEY
from db.rows import as_array

# centroid::vector: a layout may store centroids as halfvec (lab/bench/load.py); the index holds float32.
_COLUMNS = "lora_id, generation, centroid::vector, mean_radius, mean_sq_radius, searchable, nsfw, base_model"
_CHUNK = 50_000  # rows per fetch of a full load


@dataclass(frozen=True)
class SummaryArrays:
    """Summary rows column by column, in the order they were read."""

    lora_ids: np.ndarray  # int64
    generation: np.ndarray  # int64
    centroids: np.ndarray  # (n, dim) float32
    mean_radius: np.ndarray  # float32
    mean_sq_radius: np.ndarray  # float32
    searchable: np.ndarray  # bool
    nsfw: np.ndarray  # bool
    base_model: list[str]

    def __len__(self) -> int:
        return len(self.lora_ids)

    @classmethod
    def from_rows(cls, rows: list[tuple[object, ...]], dim: int) -> SummaryArrays:
        columns = list(zip(*rows, strict=True)) if rows else [()] * 8
        centroids = np.stack([as_array(v) for v in columns[2]]) if rows else np.empty((0, dim), np.float32)
        return cls(
            np.asarray(columns[0], dtype=np.int64),
            np.asarray(columns[1], dtype=np.int64),
            centroids.astype(np.float32, copy=False),
            np.asarray(columns[3], dtype=np.float32),
            np.asarray(columns[4], dtype=np.float32),
            np.asarray(columns[5], dtype=bool),
            np.asarray(columns[6], dtype=bool),
            [str(b) for b in columns[7]],
        )

    @classmethod
    def concatenate(cls, parts: list[SummaryArrays], dim: int) -> SummaryArrays:
        if not parts:
            return cls.from_rows([], dim)
        return cls(
            np.concatenate([p.lora_ids for p in parts]),
            np.concatenate([p.generation for p in parts]),
            np.concatenate([p.centroids for p in parts]),
            np.concatenate([p.mean_radius for p in parts]),
            np.concatenate([p.mean_sq_radius for p in parts]),
            np.concatenate([p.searchable for p in parts]),
            np.concatenate([p.nsfw for p in parts]),
            [b for p in parts for b in p.base_model],
        )

    def take(self, keep: np.ndarray) -> SummaryArrays:
        """The rows where the boolean mask `keep` is true."""
        return SummaryArrays(
            self.lora_ids[keep],
            self.generation[keep],
            self.centroids[keep],
            self.mean_radius[keep],
            self.mean_sq_radius[keep],
            self.searchable[keep],
            self.nsfw[keep],
            [b for b, k in zip(self.base_model, keep.tolist(), strict=True) if k],
        )


@dataclass(frozen=True)
class SummaryChanges:
    """Everything committed after generation `since` that the snapshot sees."""

    since: int
    changed: SummaryArrays  # current rows written after `since`
    removed: np.ndarray  # (lora_id, generation) of tombstones after `since`, int64 (n, 2)
    truncated: int  # generation of the last TRUNCATE after `since` (every older row gone); 0: none

    def __len__(self) -> int:
        return len(self.changed) + len(self.removed)


_GENERATION = (
    "greatest((SELECT max(generation) FROM lora_style_summary),"
    " (SELECT max(generation) FROM lora_style_summary_removed), 0)"
)


async def catalog_generation(conn: Connection) -> int:
    """The newest generation the snapshot sees, of summaries and tombstones alike (0: none yet);
    two snapshots with the same number hold the same summaries (migration 010's lock)."""
    cur = await conn.execute(f"SELECT {_GENERATION}")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def generation_and_label(db: Database) -> tuple[int, str | None]:
    """catalog_generation and the active encoder label (db.encoders), read by one statement (one
    snapshot) in one round trip: all a search that scores in memory needs from the database."""
    row = await db.search_row(f"SELECT {_GENERATION}, ({ACTIVE_LABEL_SQL})", (ENCODER_KEY,))
    assert row is not None
    return int(row[0]), None if row[1] is None else str(row[1])


async def centroid_dim(conn: Connection) -> int:
    """The centroid column's declared dimension (pgvector's typmod is the dimension)."""
    cur = await conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'lora_style_summary'::regclass"
        " AND attname = 'centroid' AND NOT attisdropped"
    )
    row = await cur.fetchone()
    if row is None or int(row[0]) <= 0:
        raise LookupError("lora_style_summary.centroid has no declared dimension")
    return int(row[0])


async def load_summaries(conn: Connection) -> tuple[int, SummaryArrays]:
    """(catalog generation, every summary row) read in the caller's snapshot, through a
    server-side cursor in binary (a million centroids never sit in one result)."""
    generation = await catalog_generation(conn)
    dim = await centroid_dim(conn)
    parts = []
    async with conn.cursor(name="summary_load", binary=True) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM lora_style_summary")
        while rows := await cur.fetchmany(_CHUNK):
            parts.append(SummaryArrays.from_rows(rows, dim))
    return generation, SummaryArrays.concatenate(parts, dim)


async def summary_changes(conn: Connection, since: int, *, dim: int, limit: int) -> SummaryChanges | None:
    """What changed after generation `since` in the caller's snapshot (centroids of `dim`), or
    None when more than `limit` rows and tombstones did (reading everything again is then the
    cheaper way)."""
    cur = conn.cursor(binary=True)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM lora_style_summary WHERE generation > %s ORDER BY generation LIMIT %s",
        (since, limit + 1),
    )
    changed = SummaryArrays.from_rows(await cur.fetchall(), dim)
    await cur.execute(
        "SELECT lora_id, generation FROM lora_style_summary_removed WHERE generation > %s"
        " ORDER BY generation LIMIT %s",
        (since, limit + 1),
    )
    tombstones = await cur.fetchall()
    if len(changed) + len(tombstones) > limit:
        return None
    truncated = max((int(g) for i, g in tombstones if i is None), default=0)
    removed = np.array([(int(i), int(g)) for i, g in tombstones if i is not None], dtype=np.int64)
    return SummaryChanges(since, changed, removed.reshape(-1, 2), truncated)


@dataclass(frozen=True)
class ReferenceBlocks:
    """Kept reference embeddings grouped by LoRA, as stored (halfvec: float16, vector: float32)."""

    lora_ids: np.ndarray  # int64, one per LoRA
    counts: np.ndarray  # int64, references of each LoRA
    embeddings: np.ndarray  # (sum(counts), dim), the LoRAs' blocks one after another

    def __len__(self) -> int:
        return len(self.lora_ids)


async def reference_kind(conn: Connection) -> str:
    """How reference_images.embedding is stored: 'halfvec' (the schema's) or 'vector' (a bench layout)."""
    cur = await conn.execute(
        "SELECT format_type(atttypid, NULL) FROM pg_attribute"
        " WHERE attrelid = 'reference_images'::regclass AND attname = 'embedding' AND NOT attisdropped"
    )
    row = await cur.fetchone()
    kind = str(row[0]) if row else ""
    if kind not in ("halfvec", "vector"):
        raise LookupError(f"reference_images.embedding is {kind or 'missing'}, not halfvec or vector")
    return kind


async def kept_reference_bytes(conn: Connection, dim: int) -> int:
    """What every kept reference takes in memory as float32."""
    cur = await conn.execute("SELECT count(*) FROM reference_images WHERE kept")
    row = await cur.fetchone()
    return (int(row[0]) if row else 0) * dim * 4


async def load_reference_blocks(
    conn: Connection, dim: int, lora_ids: np.ndarray | None = None
) -> ReferenceBlocks:
    """Every kept reference (of these LoRAs, or all) in the caller's snapshot, one row per LoRA
    with its embeddings concatenated in the type's binary form (`<type>_send` less its 4-byte
    header: big-endian components): a million LoRAs come as a million rows, not thirty million."""
    kind = await reference_kind(conn)
    element = np.dtype(">f2" if kind == "halfvec" else ">f4")
    where = "kept" if lora_ids is None else "kept AND lora_id = ANY(%(ids)s)"
    ids: list[int] = []
    counts: list[int] = []
    parts: list[np.ndarray] = []
    async with conn.cursor(name="reference_load", binary=True) as named:
        await named.execute(
            f"SELECT lora_id, count(*), max(vector_dims(embedding)),"
            f" string_agg(substring({kind}_send(embedding) FROM 5), ''::bytea)"
            f" FROM reference_images WHERE {where} GROUP BY lora_id",
            {"ids": [] if lora_ids is None else [int(i) for i in lora_ids]},
        )
        while rows := await named.fetchmany(_CHUNK // 10):
            for lora_id, count, dims, blob in rows:
                if int(dims) != dim:
                    raise LookupError(f"LoRA {lora_id} has {dims}-d references; the index holds {dim}-d")
                ids.append(int(lora_id))
                counts.append(int(count))
                parts.append(np.frombuffer(blob, dtype=element).astype(element.newbyteorder("=")))
    native = element.newbyteorder("=")
    embeddings = np.concatenate(parts).reshape(-1, dim) if parts else np.empty((0, dim), native)
    return ReferenceBlocks(np.asarray(ids, np.int64), np.asarray(counts, np.int64), embeddings)
