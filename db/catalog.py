"""The catalog: meta, samples, LoRAs and their references with the style summary they feed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pgvector import HalfVector
from psycopg.rows import dict_row

from db.database import Connection
from db.encoders import ENCODER_KEY, require_label
from db.rows import LoraRow, NewLora, ReferenceRow

__all__ = ["ENCODER_KEY"]
# Which CLIP image/text encoders made the stored spec and prompt features (GMI branch).
GMI_ENCODER_KEY = "gmi_encoder"

_LORA_COLUMNS = (
    "id, slug, name, page_url, source_url, base_model, trigger_words, nsfw, status,"
    " catalog_fingerprint, license, author"
)


async def _loras(conn: Connection, where: str, params: Sequence[Any] | dict[str, Any]) -> list[LoraRow]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_LORA_COLUMNS} FROM loras WHERE {where}", params)
    return [LoraRow(**{k: row[k] for k in LoraRow.__dataclass_fields__}) for row in await cur.fetchall()]


async def get_meta(conn: Connection, key: str, *, lock: bool = False) -> str | None:
    """A catalog_meta value; with `lock` (inside a transaction), its row held FOR SHARE until the
    commit, so a writer of that key waits for it."""
    query = (
        "SELECT value FROM catalog_meta WHERE key = %s FOR SHARE"
        if lock
        else "SELECT value FROM catalog_meta WHERE key = %s"
    )
    cur = await conn.execute(query, (key,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_meta(conn: Connection, key: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO catalog_meta (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def samples(conn: Connection) -> dict[str, str]:
    """sample id -> sha256 of its bytes."""
    cur = await conn.execute("SELECT id, sha256 FROM samples")
    return {row[0]: row[1] for row in await cur.fetchall()}


async def add_sample(conn: Connection, sample_id: str, blob_key: str, sha256: str) -> None:
    await conn.execute(
        "INSERT INTO samples (id, blob_key, sha256) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (sample_id, blob_key, sha256),
    )


async def sample_blobs(conn: Connection) -> dict[str, str]:
    """sample id -> blob key."""
    cur = await conn.execute("SELECT id, blob_key FROM samples ORDER BY id")
    return {row[0]: row[1] for row in await cur.fetchall()}


async def list_loras(conn: Connection, statuses: Sequence[str] = ("active", "hidden")) -> list[LoraRow]:
    return await _loras(conn, "status = ANY(%s) ORDER BY slug", (list(statuses),))


async def reference_blobs(conn: Connection, lora_id: int) -> dict[str, str]:
    """sample id -> blob key of one LoRA's references (kept or not)."""
    cur = await conn.execute(
        "SELECT sample_id, blob_key FROM reference_images WHERE lora_id = %s ORDER BY sample_id", (lora_id,)
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def lora_by_slug(conn: Connection, slug: str) -> LoraRow | None:
    return next(iter(await _loras(conn, "slug = %s", (slug,))), None)


async def lora_by_id(conn: Connection, lora_id: int) -> LoraRow | None:
    return (await loras_by_id(conn, [lora_id])).get(lora_id)


async def lora_by_url(conn: Connection, url: str) -> LoraRow | None:
    """The LoRA whose page or download URL this is (trailing slash ignored)."""
    where = "rtrim(page_url, '/') = %(u)s OR rtrim(source_url, '/') = %(u)s ORDER BY id LIMIT 1"
    return next(iter(await _loras(conn, where, {"u": url.rstrip("/")})), None)


async def loras_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, LoraRow]:
    return {lora.id: lora for lora in await _loras(conn, "id = ANY(%s)", (list(ids),))}


async def fingerprints(conn: Connection, kind: Literal["catalog", "spec"] = "catalog") -> dict[str, str]:
    """slug -> fingerprint of its catalog entry or of its spec ('' without one), for every LoRA."""
    cur = await conn.execute(f"SELECT slug, {kind}_fingerprint FROM loras")
    return {row[0]: row[1] for row in await cur.fetchall()}


async def replace_lora(
    conn: Connection, lora: NewLora, references: Sequence[ReferenceRow], encoder: str | None = None
) -> int:
    """Insert or replace a LoRA with its whole reference set, atomically; returns its id. With
    `encoder` (the label that embedded the references) it holds the active label until the commit
    and raises db.encoders.EncoderChanged when that is another one."""
    async with conn.transaction():
        if encoder is not None:
            await require_label(conn, encoder)
        lora_id = await insert_lora(conn, lora, replace=True)
        await conn.execute("DELETE FROM reference_images WHERE lora_id = %s", (lora_id,))
        await copy_references(conn, lora_id, references)
        await refresh_style_summary(conn, lora_id)
        return lora_id


async def has_searchable(conn: Connection) -> bool:
    """Whether any active LoRA has a style summary: a constant-time check for every search."""
    cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM lora_style_summary WHERE searchable)")
    row = await cur.fetchone()
    return bool(row and row[0])


# Every NewLora field, in the order of the INSERT below.
_NEW_LORA_COLUMNS = tuple(NewLora.__dataclass_fields__)
# An update of an existing slug keeps who created it.
_REPLACED_COLUMNS = tuple(c for c in _NEW_LORA_COLUMNS if c not in ("slug", "created_by"))
# A catalog says nothing of a registered LoRA's file: an update keeps its download link and hash
# (duplicate-file detection and lookup by link need them) unless it gives new ones.
_KEEP_WHEN_UNSAID = {
    "source_url": "COALESCE(NULLIF(excluded.source_url, ''), loras.source_url)",
    "sha256": "COALESCE(excluded.sha256, loras.sha256)",
}


async def insert_lora(conn: Connection, lora: NewLora, *, replace: bool = False) -> int:
    """Insert a LoRA row; with `replace`, an existing slug is updated instead. Returns its id."""
    conflict = ""
    if replace:
        updates = ", ".join(f"{c} = {_KEEP_WHEN_UNSAID.get(c, f'excluded.{c}')}" for c in _REPLACED_COLUMNS)
        conflict = f" ON CONFLICT (slug) DO UPDATE SET {updates}, updated_at = now()"
    cur = await conn.execute(
        f"INSERT INTO loras ({', '.join(_NEW_LORA_COLUMNS)})"
        f" VALUES ({', '.join(['%s'] * len(_NEW_LORA_COLUMNS))}){conflict} RETURNING id",
        tuple(getattr(lora, c) for c in _NEW_LORA_COLUMNS),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def copy_references(conn: Connection, lora_id: int, references: Sequence[ReferenceRow]) -> None:
    """Bulk-load one LoRA's references with binary COPY."""
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY reference_images (lora_id, sample_id, blob_key, thumb_key, sha256, embedding, kept,"
            " transfer_mse) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "text", "text", "text", "text", "halfvec", "bool", "float4"])
        for ref in references:
            await copy.write_row(
                (
                    lora_id,
                    ref.sample_id,
                    ref.blob_key,
                    ref.thumb_key,
                    ref.sha256,
                    HalfVector(np.asarray(ref.embedding, dtype=np.float32)),
                    ref.kept,
                    ref.transfer_mse,
                )
            )


async def refresh_style_summary(conn: Connection, lora_id: int) -> None:
    """Recompute a LoRA's centroid and radii from its kept references (or drop the summary), in
    float32 from the stored halfvec values: the bounds of db.ranking hold for what d_avg reads.
    An existing summary is updated in place: deleting and inserting it again left a tombstone in
    lora_style_summary_removed at every re-import and activation, and those are never removed."""
    await conn.execute(
        """
        WITH c AS (
            SELECT avg(embedding::vector) AS centroid, count(*) AS n
            FROM reference_images WHERE lora_id = %(id)s AND kept
        )
        INSERT INTO lora_style_summary (lora_id, centroid, mean_radius, mean_sq_radius, n_refs)
        SELECT %(id)s, c.centroid,
               avg(r.embedding::vector <-> c.centroid), avg((r.embedding::vector <-> c.centroid) ^ 2), c.n
        FROM c JOIN reference_images r ON r.lora_id = %(id)s AND r.kept
        WHERE c.n > 0
        GROUP BY c.centroid, c.n
        ON CONFLICT (lora_id) DO UPDATE SET
            centroid = excluded.centroid, mean_radius = excluded.mean_radius,
            mean_sq_radius = excluded.mean_sq_radius, n_refs = excluded.n_refs, updated_at = now()
        """,
        {"id": lora_id},
    )
    await conn.execute(
        "DELETE FROM lora_style_summary WHERE lora_id = %(id)s"
        " AND NOT EXISTS (SELECT 1 FROM reference_images WHERE lora_id = %(id)s AND kept)",
        {"id": lora_id},
    )


async def training_references(conn: Connection) -> list[tuple[str, str, str, bool]]:
    """(slug, sample_id, blob_key, kept) of every reference of every active or hidden LoRA: what
    adapting the style encoder to the catalog learns from (taken-down LoRAs stay out)."""
    cur = await conn.execute(
        "SELECT l.slug, r.sample_id, r.blob_key, r.kept FROM reference_images r"
        " JOIN loras l ON l.id = r.lora_id WHERE l.status IN ('active', 'hidden')"
        " ORDER BY l.slug, r.sample_id"
    )
    return [(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in await cur.fetchall()]
