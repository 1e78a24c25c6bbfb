"""GMI specifications: the platform prompt set, each LoRA's own prompts and spec points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from db.database import Connection
from db.filters import LORA_FILTER, Filters
from db.rows import LoraSpec, Prompt, SpecPointRow, SpecRow, as_array

# The spec rows a search may use; db.spec_search ranks the same rows.
SPEC_ROWS = (
    "spec_points s JOIN loras l ON l.id = s.lora_id JOIN prompts p ON p.id = s.prompt_id"
    f" WHERE {LORA_FILTER} AND p.text_feature IS NOT NULL AND s.image_feature IS NOT NULL"
)


async def platform_prompts(conn: Connection) -> list[Prompt]:
    """The platform prompt set, by local id."""
    cur = await conn.execute("SELECT id, local_id, text FROM prompts WHERE lora_id IS NULL ORDER BY local_id")
    return [Prompt(int(r[0]), int(r[1]), str(r[2])) for r in await cur.fetchall()]


async def upsert_platform_prompts(conn: Connection, texts: Sequence[str], features: np.ndarray) -> None:
    async with conn.transaction():
        await _upsert_prompts(conn, None, 0, texts, features)


async def replace_spec(
    conn: Connection,
    lora_id: int,
    own_prompts: Sequence[str],
    own_features: np.ndarray,
    n_platform: int,
    points: Sequence[SpecPointRow],
    fingerprint: str,
) -> None:
    """Replace a LoRA's own prompts and spec points atomically. Own prompt j has local id
    n_platform + j (the catalog numbering); lower ids are platform prompts."""
    async with conn.transaction():
        await conn.execute("DELETE FROM spec_points WHERE lora_id = %s", (lora_id,))
        await conn.execute("DELETE FROM prompts WHERE lora_id = %s", (lora_id,))
        own_ids = await _upsert_prompts(conn, lora_id, n_platform, own_prompts, own_features)
        ids = {p.local_id: p.id for p in await platform_prompts(conn)} | own_ids
        missing = sorted({p.prompt_local_id for p in points} - ids.keys())
        if missing:
            raise ValueError(f"spec points refer to unknown prompt ids {missing}")
        rows = [SpecRow(ids[p.prompt_local_id], p.n, p.blob_key, p.image_feature) for p in points]
        await insert_spec_points(conn, lora_id, rows)
        await conn.execute("UPDATE loras SET spec_fingerprint = %s WHERE id = %s", (fingerprint, lora_id))


async def forget_features(conn: Connection) -> None:
    """Every spec point's image feature and every LoRA's own prompt features, set NULL: a new CLIP
    model's features must never meet an earlier model's (search skips a row until it is filled)."""
    await conn.execute("UPDATE spec_points SET image_feature = NULL WHERE image_feature IS NOT NULL")
    await conn.execute(
        "UPDATE prompts SET text_feature = NULL WHERE lora_id IS NOT NULL AND text_feature IS NOT NULL"
    )


PointKey = tuple[int, int, int, str]  # lora_id, prompt_id, n, blob_key


async def points_without_features(conn: Connection, after: PointKey | None, limit: int) -> list[PointKey]:
    """Spec points still waiting for their image feature, in key order after `after`."""
    start = (-1, -1, -1) if after is None else after[:3]
    cur = await conn.execute(
        "SELECT lora_id, prompt_id, n, blob_key FROM spec_points"
        " WHERE image_feature IS NULL AND (lora_id, prompt_id, n) > (%s, %s, %s)"
        " ORDER BY lora_id, prompt_id, n LIMIT %s",
        (*start, limit),
    )
    return [(int(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in await cur.fetchall()]


async def set_point_features(conn: Connection, keys: Sequence[PointKey], features: np.ndarray) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE spec_points SET image_feature = %s WHERE lora_id = %s AND prompt_id = %s AND n = %s",
            [
                (np.asarray(f, dtype=np.float32), lora_id, prompt_id, n)
                for (lora_id, prompt_id, n, _), f in zip(keys, features, strict=True)
            ],
        )


async def prompts_without_features(conn: Connection) -> list[tuple[int, str]]:
    cur = await conn.execute("SELECT id, text FROM prompts WHERE text_feature IS NULL ORDER BY id")
    return [(int(r[0]), str(r[1])) for r in await cur.fetchall()]


async def set_prompt_features(conn: Connection, ids: Sequence[int], features: np.ndarray) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE prompts SET text_feature = %s WHERE id = %s",
            [(np.asarray(f, dtype=np.float32), i) for i, f in zip(ids, features, strict=True)],
        )


async def insert_spec_points(conn: Connection, lora_id: int, points: Sequence[SpecRow]) -> None:
    rows = [
        (
            lora_id,
            p.prompt_id,
            p.n,
            p.blob_key,
            None if p.image_feature is None else as_array(p.image_feature),
        )
        for p in points
    ]
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO spec_points (lora_id, prompt_id, n, blob_key, image_feature)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )


async def own_prompts(conn: Connection, lora_id: int) -> list[Prompt]:
    """One LoRA's own prompts, by local id."""
    cur = await conn.execute(
        "SELECT id, local_id, text FROM prompts WHERE lora_id = %s ORDER BY local_id", (lora_id,)
    )
    return [Prompt(int(r[0]), int(r[1]), str(r[2])) for r in await cur.fetchall()]


async def spec_blobs(conn: Connection, lora_id: int) -> list[tuple[int, int, str]]:
    """One LoRA's spec points as (prompt row id, n, blob key), features or not (for export)."""
    cur = await conn.execute(
        "SELECT prompt_id, n, blob_key FROM spec_points WHERE lora_id = %s ORDER BY prompt_id, n", (lora_id,)
    )
    return [(int(r[0]), int(r[1]), str(r[2])) for r in await cur.fetchall()]


async def load_specs(
    conn: Connection, lora_ids: Sequence[int] | None = None, filters: Filters = Filters()
) -> dict[int, LoraSpec]:
    """Specs of the active LoRAs passing the filters (all of them, or those in lora_ids)."""
    cur = await conn.execute(
        f"""
        SELECT s.lora_id, p.local_id, s.image_feature, p.text_feature FROM {SPEC_ROWS}
          AND (%(ids)s::bigint[] IS NULL OR s.lora_id = ANY(%(ids)s))
        ORDER BY s.lora_id, p.local_id, s.n
        """,
        {"ids": None if lora_ids is None else list(lora_ids), **filters.params()},
    )
    rows: dict[int, tuple[list[np.ndarray], list[np.ndarray], list[int]]] = {}
    for lora_id, local_id, image, text in await cur.fetchall():
        images, texts, prompt_ids = rows.setdefault(int(lora_id), ([], [], []))
        images.append(as_array(image))
        texts.append(as_array(text))
        prompt_ids.append(int(local_id))
    return {
        lora_id: LoraSpec(lora_id, np.stack(images), np.stack(texts), prompt_ids)
        for lora_id, (images, texts, prompt_ids) in rows.items()
    }


async def _upsert_prompts(
    conn: Connection, lora_id: int | None, first_local_id: int, texts: Sequence[str], features: np.ndarray
) -> dict[int, int]:
    """Insert or update prompts (lora_id NULL: the platform set); returns local id -> row id."""
    ids: dict[int, int] = {}
    for offset, (text, feature) in enumerate(zip(texts, features, strict=True)):
        cur = await conn.execute(
            """
            INSERT INTO prompts (lora_id, local_id, text, text_feature) VALUES (%s, %s, %s, %s)
            ON CONFLICT (lora_id, local_id) DO UPDATE
                SET text = excluded.text, text_feature = excluded.text_feature
            RETURNING id
            """,
            (lora_id, first_local_id + offset, text, np.asarray(feature, dtype=np.float32)),
        )
        row = await cur.fetchone()
        assert row is not None
        ids[first_local_id + offset] = int(row[0])
    return ids


async def branch_counts(conn: Connection, filters: Filters) -> tuple[int, int, int]:
    """(with a d_avg, with an RKME score, with either) among the active LoRAs passing the
    filters: the catalog the fused search's candidate union stands for (scoring.fusion)."""
    cur = await conn.execute(
        f"""
        SELECT count(*) FILTER (WHERE refs), count(*) FILTER (WHERE spec), count(*) FROM (
            SELECT EXISTS (SELECT 1 FROM reference_images r WHERE r.lora_id = l.id AND r.kept) AS refs,
                   EXISTS (SELECT 1 FROM spec_points s JOIN prompts p ON p.id = s.prompt_id
                           WHERE s.lora_id = l.id AND p.text_feature IS NOT NULL
                             AND s.image_feature IS NOT NULL) AS spec
            FROM loras l WHERE {LORA_FILTER}
        ) branches WHERE refs OR spec
        """,
        filters.params(),
    )
    row = await cur.fetchone()
    assert row is not None  # an aggregate always returns its row
    return int(row[0]), int(row[1]), int(row[2])
