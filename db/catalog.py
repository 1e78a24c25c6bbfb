"""Async repository on psycopg 3 + pgvector: every query the service makes lives here."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

ENCODER_KEY = "style_encoder"
# Which CLIP image/text encoders made the stored spec and prompt features (GMI branch).
GMI_ENCODER_KEY = "gmi_encoder"


@dataclass(frozen=True)
class LoraRow:
    id: int
    slug: str
    name: str
    page_url: str
    source_url: str
    base_model: str
    trigger_words: list[str]
    nsfw: bool
    status: str
    catalog_fingerprint: str = ""
    license: str = ""
    author: str = ""


@dataclass(frozen=True)
class NewLora:
    slug: str
    name: str
    base_model: str
    page_url: str = ""
    source_url: str = ""
    trigger_words: list[str] = field(default_factory=list)
    license: str = ""
    author: str = ""
    nsfw: bool = False
    sha256: str | None = None
    created_by: str = ""
    catalog_fingerprint: str = ""


@dataclass(frozen=True)
class ReferenceRow:
    sample_id: str
    blob_key: str
    thumb_key: str
    sha256: str
    embedding: np.ndarray
    kept: bool
    transfer_mse: float


@dataclass(frozen=True)
class NearestReference:
    lora_id: int
    sample_id: str
    blob_key: str
    thumb_key: str
    distance: float


@dataclass(frozen=True)
class FlagRow:
    id: uuid.UUID
    lora_id: int
    slug: str
    lora_name: str
    reporter: str
    note: str
    evidence: dict[str, Any]
    status: str
    reviewer: str
    created_at: datetime
    decided_at: datetime | None


class AuditEntry(NamedTuple):
    actor: str  # who the caller says acted (a bot's moderator id)
    action: str
    subject: str
    details: dict[str, Any]
    client: str | None  # the authenticated client; None for operator commands on the database


@dataclass(frozen=True)
class FlagEvidenceRow:
    """How close artwork is to one LoRA: its d_avg, its rank among the catalog, the catalog size."""

    style_distance: float
    rank: int
    catalog_size: int


@dataclass(frozen=True)
class SpecPointRow:
    prompt_local_id: int  # id in the catalog: platform prompt line, or continuing in spec/prompts.txt
    n: int
    blob_key: str
    image_feature: np.ndarray


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA's GMI specification: image features and, row by row, their prompts' text features."""

    lora_id: int
    image_features: np.ndarray  # (N, D)
    prompt_features: np.ndarray  # (N, T)
    prompt_ids: list[int]


@dataclass(frozen=True)
class FeedbackVote:
    search_id: str
    voter: str  # the voter's pseudonym on this search (migration 006), never a user id
    rank: int  # 1-based rank of the voted result in its search
    vote: int  # +1 up, -1 down
    base_model: str  # of the voted LoRA
    at: datetime


@dataclass(frozen=True)
class CentroidCandidates:
    """LoRAs in increasing distance of their centroid to the mean query embedding, with the
    per-image bounds on d_avg of DESIGN.md 5 (averaged over the query images)."""

    lora_ids: np.ndarray  # int64
    distance: np.ndarray  # |mean(q) - c|: the scan order, a lower bound of `lower`
    lower: np.ndarray  # mean_i |q_i - c|  <= d_avg (Jensen)
    upper: np.ndarray  # mean_i min(|q_i - c| + r, sqrt(|q_i - c|^2 + v))  >= d_avg
    exact_scan: bool  # False: the HNSW index answered (approximate order)


@dataclass(frozen=True)
class StoredSearch:
    id: uuid.UUID
    query_embedding: np.ndarray
    pseudo_prompt: str
    ranking: list[dict[str, Any]]
    filters: dict[str, Any]
    expires_at: datetime
    expired: bool


def as_array(value: Any) -> np.ndarray:
    """A pgvector value (Vector object or array) as float32 numpy."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


_LORA_COLUMNS = (
    "id, slug, name, page_url, source_url, base_model, trigger_words, nsfw, status,"
    " catalog_fingerprint, license, author"
)


def _lora(row: dict[str, Any]) -> LoraRow:
    return LoraRow(**{k: row[k] for k in LoraRow.__dataclass_fields__})


_FLAG_SELECT = (
    "SELECT f.id, f.lora_id, l.slug, l.name AS lora_name, f.reporter, f.note, f.evidence, f.status,"
    " coalesce(f.reviewer, '') AS reviewer, f.created_at, f.decided_at"
    " FROM flags f JOIN loras l ON l.id = f.lora_id"
)


def _flag(row: dict[str, Any]) -> FlagRow:
    return FlagRow(**{k: row[k] for k in FlagRow.__dataclass_fields__})


async def audit(
    conn: AsyncConnection[Any],
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    *,
    client: str | None = None,
) -> None:
    """One audit_log row, written in the caller's transaction so it commits with the decision.
    `actor` is who the caller says acted (a bot's moderator id); `client` is the authenticated
    client that made the call (None: an operator command on the database itself)."""
    await conn.execute(
        "INSERT INTO audit_log (actor, client, action, subject, details) VALUES (%s, %s, %s, %s, %s)",
        (actor, client, action, subject, json.dumps(details)),
    )


async def _configure(conn: AsyncConnection[Any]) -> None:
    await register_vector_async(conn)


class Repository:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]], search_timeout_ms: int = 0) -> None:
        self.pool = pool
        self.search_timeout_ms = search_timeout_ms  # statement_timeout of search queries; 0: none

    @classmethod
    async def open(
        cls, url: str, *, max_size: int = 8, timeout: float = 10.0, search_timeout_ms: int = 0
    ) -> Repository:
        """Open a pool on a migrated database (the vector type must exist to register it)."""
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            configure=_configure,
            check=AsyncConnectionPool.check_connection,  # survives a database restart
            timeout=timeout,
        )
        await pool.open(wait=True, timeout=timeout)
        return cls(pool, search_timeout_ms)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """One pooled connection for several queries (a search's round trips share it)."""
        async with self.pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def search_connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection for search queries, whose statements PostgreSQL cancels after
        search_timeout_ms (QueryCanceled). Transaction-local: the setting ends with the
        transaction the pool closes, so other users of the connection never see it."""
        async with self.pool.connection() as conn:
            if self.search_timeout_ms > 0:
                await conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)", (f"{self.search_timeout_ms}ms",)
                )
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    # --- catalog meta -----------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT value FROM catalog_meta WHERE key = %s", (key,))
            row = await cur.fetchone()
            return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str, conn: AsyncConnection[Any] | None = None) -> None:
        sql = (
            "INSERT INTO catalog_meta (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        if conn is not None:
            await conn.execute(sql, (key, value))
            return
        async with self.pool.connection() as own:
            await own.execute(sql, (key, value))

    # --- samples and LoRAs ------------------------------------------------------------------

    async def samples(self) -> dict[str, str]:
        """sample id -> sha256 of its bytes."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id, sha256 FROM samples")
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def add_sample(self, sample_id: str, blob_key: str, sha256: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO samples (id, blob_key, sha256) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (sample_id, blob_key, sha256),
            )

    async def sample_blobs(self) -> dict[str, str]:
        """sample id -> blob key."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id, blob_key FROM samples ORDER BY id")
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def list_loras(self, statuses: Sequence[str] = ("active", "hidden")) -> list[LoraRow]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_LORA_COLUMNS} FROM loras WHERE status = ANY(%s) ORDER BY slug", (list(statuses),)
            )
            return [_lora(row) for row in await cur.fetchall()]

    async def reference_blobs(self, lora_id: int) -> dict[str, str]:
        """sample id -> blob key of one LoRA's references (kept or not)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT sample_id, blob_key FROM reference_images WHERE lora_id = %s ORDER BY sample_id",
                (lora_id,),
            )
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def lora_by_slug(self, slug: str) -> LoraRow | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_LORA_COLUMNS} FROM loras WHERE slug = %s", (slug,))
            row = await cur.fetchone()
            return None if row is None else _lora(row)

    async def lora_by_id(self, lora_id: int) -> LoraRow | None:
        return (await self.loras_by_id([lora_id])).get(lora_id)

    async def lora_by_url(self, url: str) -> LoraRow | None:
        """The LoRA whose page or download URL this is (trailing slash ignored)."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_LORA_COLUMNS} FROM loras WHERE rtrim(page_url, '/') = %(u)s"
                " OR rtrim(source_url, '/') = %(u)s ORDER BY id LIMIT 1",
                {"u": url.rstrip("/")},
            )
            row = await cur.fetchone()
            return None if row is None else _lora(row)

    async def loras_by_id(self, ids: Sequence[int]) -> dict[int, LoraRow]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_LORA_COLUMNS} FROM loras WHERE id = ANY(%s)", (list(ids),))
            return {row["id"]: _lora(row) for row in await cur.fetchall()}

    async def fingerprints(self) -> dict[str, str]:
        """slug -> catalog fingerprint, for every LoRA."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT slug, catalog_fingerprint FROM loras")
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def replace_lora(self, lora: NewLora, references: Sequence[ReferenceRow]) -> int:
        """Insert or replace a LoRA with its whole reference set, atomically; returns its id."""
        async with self.transaction() as conn:
            lora_id = await insert_lora(conn, lora, replace=True)
            await conn.execute("DELETE FROM reference_images WHERE lora_id = %s", (lora_id,))
            await copy_references(conn, lora_id, references)
            await refresh_style_summary(conn, lora_id)
            return lora_id

    async def count_searchable(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM loras l WHERE l.status = 'active'"
                " AND EXISTS (SELECT 1 FROM reference_images r WHERE r.lora_id = l.id AND r.kept)"
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def has_searchable(self) -> bool:
        """Whether any active LoRA has a style summary: a constant-time check for every search."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM lora_style_summary WHERE searchable)")
            row = await cur.fetchone()
            return bool(row and row[0])

    async def all_references(self) -> list[tuple[int, str, str]]:
        """(lora_id, sample_id, blob_key) of every reference, for re-embedding."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT lora_id, sample_id, blob_key FROM reference_images ORDER BY 1, 2"
            )
            return [(int(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]

    async def update_embeddings(self, rows: Sequence[tuple[int, str, np.ndarray]]) -> None:
        async with self.transaction() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE reference_images SET embedding = %s WHERE lora_id = %s AND sample_id = %s",
                    [(emb, lora_id, sample_id) for lora_id, sample_id, emb in rows],
                )
            for lora_id in sorted({r[0] for r in rows}):
                await refresh_style_summary(conn, lora_id)

    # --- GMI specifications -------------------------------------------------------------------

    async def platform_prompts(self) -> dict[int, str]:
        """local id -> text of the platform prompt set."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT local_id, text FROM prompts WHERE lora_id IS NULL ORDER BY 1")
            return {int(r[0]): str(r[1]) for r in await cur.fetchall()}

    async def upsert_platform_prompts(self, texts: Sequence[str], features: np.ndarray) -> None:
        async with self.transaction() as conn:
            await _upsert_prompts(conn, None, 0, texts, features)

    async def spec_fingerprints(self) -> dict[str, str]:
        """slug -> spec fingerprint ('' without a spec)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT slug, spec_fingerprint FROM loras")
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def replace_spec(
        self,
        lora_id: int,
        own_prompts: Sequence[str],
        own_features: np.ndarray,
        n_platform: int,
        points: Sequence[SpecPointRow],
        fingerprint: str,
    ) -> None:
        """Replace a LoRA's own prompts and spec points atomically. Own prompt j has local id
        n_platform + j (the catalog numbering); lower ids are platform prompts."""
        async with self.transaction() as conn:
            await conn.execute("DELETE FROM spec_points WHERE lora_id = %s", (lora_id,))
            await conn.execute("DELETE FROM prompts WHERE lora_id = %s", (lora_id,))
            own_ids = await _upsert_prompts(conn, lora_id, n_platform, own_prompts, own_features)
            cur = await conn.execute("SELECT local_id, id FROM prompts WHERE lora_id IS NULL")
            ids = {int(r[0]): int(r[1]) for r in await cur.fetchall()} | own_ids
            missing = sorted({p.prompt_local_id for p in points} - ids.keys())
            if missing:
                raise ValueError(f"spec points refer to unknown prompt ids {missing}")
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO spec_points (lora_id, prompt_id, n, blob_key, image_feature)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [
                        (
                            lora_id,
                            ids[p.prompt_local_id],
                            p.n,
                            p.blob_key,
                            np.asarray(p.image_feature, np.float32),
                        )
                        for p in points
                    ],
                )
            await conn.execute("UPDATE loras SET spec_fingerprint = %s WHERE id = %s", (fingerprint, lora_id))

    async def load_specs(
        self,
        lora_ids: Sequence[int] | None = None,
        *,
        base_model: str = "",
        allow_nsfw: bool = False,
    ) -> dict[int, LoraSpec]:
        """Specs of the active LoRAs passing the filters (all of them, or those in lora_ids)."""
        async with self.search_connection() as conn:
            cur = await conn.execute(
                """
                SELECT s.lora_id, p.local_id, s.image_feature, p.text_feature
                FROM spec_points s JOIN loras l ON l.id = s.lora_id JOIN prompts p ON p.id = s.prompt_id
                WHERE l.status = 'active' AND p.text_feature IS NOT NULL AND s.image_feature IS NOT NULL
                  AND (%(ids)s::bigint[] IS NULL OR s.lora_id = ANY(%(ids)s))
                  AND (%(base)s = '' OR l.base_model = %(base)s)
                  AND (%(nsfw)s OR NOT l.nsfw)
                ORDER BY s.lora_id, p.local_id, s.n
                """,
                {
                    "ids": None if lora_ids is None else list(lora_ids),
                    "base": base_model,
                    "nsfw": allow_nsfw,
                },
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

    async def nearest_spec_loras(
        self,
        queries: Sequence[np.ndarray],
        *,
        limit: int,
        base_model: str = "",
        allow_nsfw: bool = False,
    ) -> list[tuple[int, float]]:
        """The GMI branch's candidates: the `limit` LoRAs whose spec image features lie nearest
        the query's CLIP image features, as (lora id, distance) ascending. A LoRA's distance is
        the mean over the query images of its nearest spec point (a multi-image query scores
        the mean over its images too). Same rows and filters as load_specs.

        An exact scan in SQL, no index: image_feature is an untyped vector (the dimension
        follows the configured CLIP), and a LoRA has tens of points, so the scan reads
        |catalog| x tens of rows and ships only `limit` rows to Python."""
        return await self._ranked(
            """
            SELECT lora_id, avg(d) AS d FROM (
                SELECT s.lora_id, q.i, min(s.image_feature <-> q.v) AS d
                FROM spec_points s JOIN loras l ON l.id = s.lora_id JOIN prompts p ON p.id = s.prompt_id
                CROSS JOIN unnest(%(q)s::vector[]) WITH ORDINALITY AS q(v, i)
                WHERE l.status = 'active' AND p.text_feature IS NOT NULL AND s.image_feature IS NOT NULL
                  AND (%(base)s = '' OR l.base_model = %(base)s)
                  AND (%(nsfw)s OR NOT l.nsfw)
                GROUP BY s.lora_id, q.i
            ) nearest
            GROUP BY lora_id
            ORDER BY d, lora_id
            LIMIT %(limit)s
            """,
            queries,
            limit=limit,
            base_model=base_model,
            allow_nsfw=allow_nsfw,
        )

    # --- search -----------------------------------------------------------------------------

    async def rank_exhaustive(
        self, queries: Sequence[np.ndarray], *, limit: int, base_model: str = "", allow_nsfw: bool = False
    ) -> list[tuple[int, float]]:
        """Exact d_avg(q, m) = mean_s |f(q) - f(t(s, m))| over kept references, ascending; with
        several query images, the mean of their d_avg (every query meets every reference)."""
        return await self._ranked(
            """
            SELECT r.lora_id, avg(r.embedding <-> q.v) AS d
            FROM reference_images r JOIN loras l ON l.id = r.lora_id
            CROSS JOIN unnest(%(q)s::vector[]) AS q(v)
            WHERE r.kept AND l.status = 'active'
              AND (%(base)s = '' OR l.base_model = %(base)s)
              AND (%(nsfw)s OR NOT l.nsfw)
            GROUP BY r.lora_id
            ORDER BY d, r.lora_id
            LIMIT %(limit)s
            """,
            queries,
            limit=limit,
            base_model=base_model,
            allow_nsfw=allow_nsfw,
        )

    async def _ranked(
        self, sql: str, queries: Sequence[np.ndarray], *, limit: int, base_model: str, allow_nsfw: bool
    ) -> list[tuple[int, float]]:
        """(lora id, score) rows of a ranking query over the query vectors and the usual filters."""
        async with self.search_connection() as conn:
            cur = await conn.execute(
                sql,
                {
                    "q": [np.asarray(q, dtype=np.float32) for q in queries],
                    "base": base_model,
                    "nsfw": allow_nsfw,
                    "limit": limit,
                },
            )
            return [(int(r[0]), float(r[1])) for r in await cur.fetchall()]

    async def nearest_centroids(
        self,
        conn: AsyncConnection[Any],
        queries: Sequence[np.ndarray],
        *,
        limit: int,
        base_model: str = "",
        allow_nsfw: bool = False,
        ef_search: int = 100,
        exact_below: int = 2000,
        force_exact: bool = False,
        walk_from: np.ndarray | None = None,
    ) -> CentroidCandidates:
        """The `limit` searchable LoRAs whose centroids are nearest `walk_from` (default
        mean(queries)); bounds are over every query image. The HNSW index
        answers (iterative scan, so filters never starve the result) unless the catalog has
        fewer than `exact_below` LoRAs or `force_exact`; then an exact scan does. Runs inside
        the caller's transaction: the planner settings are transaction-local."""
        stack = np.stack([np.asarray(q, dtype=np.float32) for q in queries])
        mean = stack.mean(axis=0) if walk_from is None else np.asarray(walk_from, dtype=np.float32)
        cur = await conn.execute(
            """
            SELECT set_config('hnsw.ef_search', %(ef)s, true),
                   set_config('hnsw.iterative_scan', 'strict_order', true),
                   set_config('enable_indexscan',
                              CASE WHEN NOT %(force)s AND c.reltuples >= %(below)s THEN 'on' ELSE 'off' END,
                              true)
            FROM pg_class c WHERE c.oid = 'lora_style_summary'::regclass
            """,
            {"ef": str(max(ef_search, min(limit, 1000))), "below": exact_below, "force": force_exact},
        )
        setting = await cur.fetchone()
        exact_scan = setting is None or setting[2] == "off"
        cur = await conn.execute(
            """
            SELECT c.lora_id, c.d, b.lb, b.ub FROM (
                SELECT lora_id, centroid, mean_radius, mean_sq_radius, centroid <-> %(mean)s AS d
                FROM lora_style_summary
                WHERE searchable AND (%(base)s = '' OR base_model = %(base)s) AND (%(nsfw)s OR NOT nsfw)
                ORDER BY centroid <-> %(mean)s
                LIMIT %(limit)s
            ) c CROSS JOIN LATERAL (
                SELECT avg(c.centroid <-> q.v) AS lb,
                       avg(least(
                           (c.centroid <-> q.v) + c.mean_radius,
                           sqrt((c.centroid <-> q.v) ^ 2 + c.mean_sq_radius))) AS ub
                FROM unnest(%(q)s::vector[]) AS q(v)
            ) b
            ORDER BY c.d, c.lora_id
            """,
            {"mean": mean, "q": list(stack), "base": base_model, "nsfw": allow_nsfw, "limit": limit},
        )
        rows = await cur.fetchall()
        # The HNSW scan stops after hnsw.max_scan_tuples: a short answer from the index does not
        # prove the catalog is exhausted (a selective filter), so ask the exact scan.
        if not exact_scan and len(rows) < limit:
            return await self.nearest_centroids(
                conn,
                queries,
                limit=limit,
                base_model=base_model,
                allow_nsfw=allow_nsfw,
                ef_search=ef_search,
                exact_below=exact_below,
                force_exact=True,
                walk_from=walk_from,
            )
        table = np.array([(r[0], r[1], r[2], r[3]) for r in rows], dtype=np.float64).reshape(-1, 4)
        return CentroidCandidates(
            lora_ids=table[:, 0].astype(np.int64),
            distance=table[:, 1],
            lower=table[:, 2],
            upper=table[:, 3],
            exact_scan=exact_scan,
        )

    async def d_avg_of(
        self, conn: AsyncConnection[Any], queries: Sequence[np.ndarray], lora_ids: Sequence[int]
    ) -> dict[int, float]:
        """Exact d_avg (mean over the query images) of the given LoRAs, as rank_exhaustive."""
        cur = await conn.execute(
            """
            SELECT r.lora_id, avg(r.embedding <-> q.v)
            FROM reference_images r CROSS JOIN unnest(%(q)s::vector[]) AS q(v)
            WHERE r.lora_id = ANY(%(ids)s) AND r.kept
            GROUP BY r.lora_id
            """,
            {"q": [np.asarray(q, dtype=np.float32) for q in queries], "ids": [int(i) for i in lora_ids]},
        )
        return {int(r[0]): float(r[1]) for r in await cur.fetchall()}

    async def nearest_references(
        self, query: np.ndarray, lora_ids: Sequence[int], per_lora: int
    ) -> dict[int, list[NearestReference]]:
        """The per_lora references of each LoRA nearest the query: its sample transfers."""
        async with self.search_connection() as conn:
            cur = await conn.execute(
                """
                SELECT lora_id, sample_id, blob_key, thumb_key, d FROM (
                    SELECT r.lora_id, r.sample_id, r.blob_key, r.thumb_key, r.embedding <-> %(q)s AS d,
                           row_number() OVER (PARTITION BY r.lora_id ORDER BY r.embedding <-> %(q)s) AS n
                    FROM reference_images r WHERE r.lora_id = ANY(%(ids)s) AND r.kept
                ) ranked WHERE n <= %(k)s ORDER BY lora_id, d
                """,
                {"q": query, "ids": list(lora_ids), "k": per_lora},
            )
            found: dict[int, list[NearestReference]] = {i: [] for i in lora_ids}
            for row in await cur.fetchall():
                found[int(row[0])].append(
                    NearestReference(int(row[0]), row[1], row[2], row[3], float(row[4]))
                )
            return found

    async def save_search(
        self,
        *,
        query: np.ndarray,
        pseudo_prompt: str,
        ranking: list[dict[str, Any]],
        filters: dict[str, Any],
        requested_by: str,
        ttl_hours: float,
    ) -> tuple[uuid.UUID, datetime]:
        search_id = uuid.uuid4()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                INSERT INTO searches (id, query_embedding, pseudo_prompt, ranking, filters, requested_by,
                                      expires_at)
                VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))
                RETURNING expires_at
                """,
                (
                    search_id,
                    query,
                    pseudo_prompt,
                    json.dumps(ranking),
                    json.dumps(filters),
                    requested_by,
                    ttl_hours * 3600.0,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            return search_id, row[0]

    async def get_search(self, search_id: uuid.UUID) -> StoredSearch | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, query_embedding, pseudo_prompt, ranking, filters, expires_at,"
                " expires_at <= now() FROM searches WHERE id = %s",
                (search_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return StoredSearch(row[0], as_array(row[1]), row[2], row[3], row[4], row[5], bool(row[6]))

    # --- feedback ---------------------------------------------------------------------------

    async def record_feedback(
        self, *, search_id: uuid.UUID, lora_id: int, voter: str, vote: int, rank: int | None, base_model: str
    ) -> bool:
        """Store a vote; a voter's second vote on the same result replaces the first.
        `voter` is the user's pseudonym (inference_service.pseudonyms), never the user id.
        Returns True when this is the voter's first vote on it."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                INSERT INTO feedback (search_id, lora_id, voter, vote, rank, base_model)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (search_id, lora_id, voter) DO UPDATE
                    SET vote = excluded.vote, rank = excluded.rank, created_at = now()
                RETURNING (xmax = 0) AS inserted
                """,
                (search_id, lora_id, voter, vote, rank, base_model),
            )
            row = await cur.fetchone()
            assert row is not None
            return bool(row[0])

    async def votes(self, search_id: uuid.UUID) -> list[tuple[int, str, int]]:
        """(lora_id, voter pseudonym, vote) of one search, for reports and tests."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT lora_id, voter, vote FROM feedback WHERE search_id = %s ORDER BY lora_id, voter",
                (search_id,),
            )
            return [(int(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def feedback_votes(self, since: datetime | None = None) -> list[FeedbackVote]:
        """Every counted vote (one per user, search and LoRA), with the LoRA's base model."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                SELECT f.search_id, f.voter, f.rank, f.vote, l.base_model, f.created_at
                FROM feedback f JOIN loras l ON l.id = f.lora_id
                WHERE f.rank IS NOT NULL AND (%(since)s::timestamptz IS NULL OR f.created_at >= %(since)s)
                ORDER BY f.created_at
                """,
                {"since": since},
            )
            return [
                FeedbackVote(str(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]), r[5])
                for r in await cur.fetchall()
            ]

    # --- moderation -------------------------------------------------------------------------

    async def set_lora_status(
        self,
        lora_id: int,
        status: str,
        *,
        actor: str,
        action: str,
        details: dict[str, Any],
        client: str | None = None,
    ) -> str:
        """Change a LoRA's status and audit it in one transaction; returns the previous status."""
        async with self.transaction() as conn:
            cur = await conn.execute("SELECT status, slug FROM loras WHERE id = %s FOR UPDATE", (lora_id,))
            row = await cur.fetchone()
            if row is None:
                raise LookupError(f"no LoRA with id {lora_id}")
            previous, slug = str(row[0]), str(row[1])
            if previous != status:
                await conn.execute(
                    "UPDATE loras SET status = %s, updated_at = now() WHERE id = %s", (status, lora_id)
                )
                await audit(
                    conn, actor, action, slug, {**details, "from": previous, "to": status}, client=client
                )
            return previous

    async def evidence_for(self, queries: Sequence[np.ndarray], lora_id: int) -> FlagEvidenceRow | None:
        """d_avg of the queries to one LoRA and its rank among every active LoRA (plus itself);
        None when the LoRA has no kept references to compare with."""
        async with self.search_connection() as conn:
            cur = await conn.execute(
                """
                WITH d AS (
                    SELECT r.lora_id, avg(r.embedding <-> q.v) AS d
                    FROM reference_images r JOIN loras l ON l.id = r.lora_id
                    CROSS JOIN unnest(%(q)s::vector[]) AS q(v)
                    WHERE r.kept AND (l.status = 'active' OR l.id = %(id)s)
                    GROUP BY r.lora_id
                ), target AS (SELECT d FROM d WHERE lora_id = %(id)s)
                SELECT target.d,
                       (SELECT count(*) FROM d WHERE d.d < target.d) + 1,
                       (SELECT count(*) FROM d)
                FROM target
                """,
                {"q": [np.asarray(q, dtype=np.float32) for q in queries], "id": lora_id},
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return FlagEvidenceRow(float(row[0]), int(row[1]), int(row[2]))

    async def insert_flag(
        self, *, lora_id: int, reporter: str, note: str, evidence: dict[str, Any], client: str | None = None
    ) -> FlagRow:
        flag_id = uuid.uuid4()
        async with self.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO flags (id, lora_id, reporter, note, evidence) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING (SELECT slug FROM loras WHERE id = %s)",
                (flag_id, lora_id, reporter, note, json.dumps(evidence), lora_id),
            )
            row = await cur.fetchone()
            assert row is not None
            await audit(
                conn, reporter, "flag_lookalike", str(row[0]), {"flag_id": str(flag_id)}, client=client
            )
            flag = await _fetch_flag(conn, flag_id)
            assert flag is not None
            return flag

    async def get_flag(self, flag_id: uuid.UUID) -> FlagRow | None:
        async with self.pool.connection() as conn:
            return await _fetch_flag(conn, flag_id)

    async def list_flags(self, status: str | None, limit: int) -> list[FlagRow]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                _FLAG_SELECT + " WHERE (%(s)s::text IS NULL OR f.status = %(s)s)"
                " ORDER BY f.created_at DESC, f.id LIMIT %(n)s",
                {"s": status, "n": limit},
            )
            return [_flag(row) for row in await cur.fetchall()]

    async def decide_flag(
        self, flag_id: uuid.UUID, *, status: str, moderator: str, reason: str, client: str | None = None
    ) -> tuple[FlagRow | None, bool]:
        """Decide an open flag (approve also takes its LoRA down), audited, atomically.
        Returns (flag, decided_now): decided_now is False when the flag was no longer open."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                "UPDATE flags SET status = %s, reviewer = %s, decided_at = now()"
                " WHERE id = %s AND status = 'open' RETURNING lora_id",
                (status, moderator, flag_id),
            )
            row = await cur.fetchone()
            if row is None:
                return await _fetch_flag(conn, flag_id), False
            lora_id = int(row[0])
            details = {"flag_id": str(flag_id), "reason": reason}
            if status == "approved":
                cur = await conn.execute(
                    "UPDATE loras SET status = 'taken_down', updated_at = now() WHERE id = %s RETURNING slug",
                    (lora_id,),
                )
            else:
                cur = await conn.execute("SELECT slug FROM loras WHERE id = %s", (lora_id,))
            slug_row = await cur.fetchone()
            assert slug_row is not None
            await audit(conn, moderator, f"flag_{status}", str(slug_row[0]), details, client=client)
            return await _fetch_flag(conn, flag_id), True

    async def audit_entries(self, subject: str | None = None) -> list[AuditEntry]:
        """Oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT actor, action, subject, details, client FROM audit_log"
                " WHERE (%(s)s::text IS NULL OR subject = %(s)s) ORDER BY id",
                {"s": subject},
            )
            return [
                AuditEntry(str(r[0]), str(r[1]), str(r[2]), dict(r[3]), r[4]) for r in await cur.fetchall()
            ]

    async def delete_expired_searches(self, batch: int = 1000) -> int:
        """Delete every expired search (embedding, pseudo-prompt, ranking, requester); returns
        how many. In batches, each its own short transaction; SKIP LOCKED lets replicas purging
        at the same moment share the work instead of waiting on each other's rows."""
        deleted = 0
        async with self.pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    "DELETE FROM searches WHERE id IN (SELECT id FROM searches WHERE expires_at <= now()"
                    " LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (batch,),
                )
                await conn.commit()
                deleted += cur.rowcount
                if cur.rowcount < batch:
                    return deleted


async def _fetch_flag(conn: AsyncConnection[Any], flag_id: uuid.UUID) -> FlagRow | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_FLAG_SELECT + " WHERE f.id = %s", (flag_id,))
    row = await cur.fetchone()
    return None if row is None else _flag(row)


async def _upsert_prompts(
    conn: AsyncConnection[Any],
    lora_id: int | None,
    first_local_id: int,
    texts: Sequence[str],
    features: np.ndarray,
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


# Every NewLora field, in the order of the INSERT below.
_NEW_LORA_COLUMNS = tuple(NewLora.__dataclass_fields__)
# An update of an existing slug keeps who created it.
_REPLACED_COLUMNS = tuple(c for c in _NEW_LORA_COLUMNS if c not in ("slug", "created_by"))


async def insert_lora(conn: AsyncConnection[Any], lora: NewLora, *, replace: bool = False) -> int:
    """Insert a LoRA row; with `replace`, an existing slug is updated instead. Returns its id."""
    conflict = ""
    if replace:
        updates = ", ".join(f"{c} = excluded.{c}" for c in _REPLACED_COLUMNS)
        conflict = f" ON CONFLICT (slug) DO UPDATE SET {updates}, updated_at = now()"
    cur = await conn.execute(
        f"INSERT INTO loras ({', '.join(_NEW_LORA_COLUMNS)})"
        f" VALUES ({', '.join(['%s'] * len(_NEW_LORA_COLUMNS))}){conflict} RETURNING id",
        tuple(getattr(lora, c) for c in _NEW_LORA_COLUMNS),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def copy_references(
    conn: AsyncConnection[Any], lora_id: int, references: Sequence[ReferenceRow]
) -> None:
    """Bulk-load one LoRA's references with binary COPY."""
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY reference_images (lora_id, sample_id, blob_key, thumb_key, sha256, embedding, kept,"
            " transfer_mse) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "text", "text", "text", "text", "vector", "bool", "float4"])
        for ref in references:
            await copy.write_row(
                (
                    lora_id,
                    ref.sample_id,
                    ref.blob_key,
                    ref.thumb_key,
                    ref.sha256,
                    np.asarray(ref.embedding, dtype=np.float32),
                    ref.kept,
                    ref.transfer_mse,
                )
            )


async def refresh_style_summary(conn: AsyncConnection[Any], lora_id: int) -> None:
    """Recompute a LoRA's centroid and radii from its kept references (or drop the summary)."""
    await conn.execute("DELETE FROM lora_style_summary WHERE lora_id = %s", (lora_id,))
    await conn.execute(
        """
        WITH c AS (
            SELECT avg(embedding) AS centroid, count(*) AS n
            FROM reference_images WHERE lora_id = %(id)s AND kept
        )
        INSERT INTO lora_style_summary (lora_id, centroid, mean_radius, mean_sq_radius, n_refs)
        SELECT %(id)s, c.centroid,
               avg(r.embedding <-> c.centroid), avg((r.embedding <-> c.centroid) ^ 2), c.n
        FROM c JOIN reference_images r ON r.lora_id = %(id)s AND r.kept
        WHERE c.n > 0
        GROUP BY c.centroid, c.n
        """,
        {"id": lora_id},
    )
