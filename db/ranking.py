"""Ranking queries over pgvector: exact d_avg, the centroid index and nearest references (the
GMI branch's spec-point candidates are db/spec_search.py).

d_avg (docs/design.md 5) is computed in SQL by D_AVG alone; its numpy twin is
inference_service/scoring/style_distance.py and the two-stage search that bounds it from the
centroids is inference_service/search/centroids.py. Change one, check the other two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from db.database import Connection
from db.filters import LORA_FILTER, SUMMARY_FILTER, Filters
from db.rows import CentroidCandidates, NearestReference


def d_avg_sql(where: str, *, images: int, join_loras: bool = True) -> str:
    """(lora_id, d): d_avg(q, m) = mean_s |f(q) - f(t(s, m))| over kept references of the LoRAs
    passing `where` (over `reference_images r JOIN loras l`, or `r` alone without `join_loras`);
    with several query images (`images` of them in %(q)s), the mean of their d_avg (every query
    meets every reference). References are stored as halfvec and compared in float32
    (`::vector`), so d_avg is exact for the stored values and the centroid bounds, computed the
    same way, hold to float32 rounding. One distance term per query image on each reference row,
    not a join with the query images: the join's row per (reference, image) pair cost half the
    scoring time of a single-image search."""
    if images < 1:
        raise ValueError("d_avg needs at least one query image")
    join = "JOIN loras l ON l.id = r.lora_id" if join_loras else ""
    terms = " + ".join(f"(r.embedding::vector <-> (%(q)s::vector[])[{i}])" for i in range(1, images + 1))
    mean = terms if images == 1 else f"({terms}) / {images}"
    return f"""
        SELECT r.lora_id, avg({mean}) AS d
        FROM reference_images r {join}
        WHERE r.kept AND {where}
        GROUP BY r.lora_id
    """


def vectors(queries: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(q, dtype=np.float32) for q in queries]


async def rank_exhaustive(
    conn: Connection, queries: Sequence[np.ndarray], filters: Filters, *, limit: int | None
) -> list[tuple[int, float]]:
    """Exact d_avg of the LoRAs passing the filters, ascending: the reference ranking (limit None:
    every LoRA)."""
    sql = f"{d_avg_sql(LORA_FILTER, images=len(queries))} ORDER BY d, r.lora_id LIMIT %(limit)s"
    return await _ranked(conn, sql, queries, filters, limit)


async def d_avg_of(
    conn: Connection, queries: Sequence[np.ndarray], lora_ids: Sequence[int]
) -> dict[int, float]:
    """Exact d_avg of the given LoRAs, as rank_exhaustive (LoRAs without kept references absent)."""
    # No join with loras: the candidates passed the filters already, and the join cost a quarter
    # of the time (an index probe per reference row).
    cur = await conn.execute(
        d_avg_sql("r.lora_id = ANY(%(ids)s)", images=len(queries), join_loras=False),
        {"q": vectors(queries), "ids": [int(i) for i in lora_ids]},
    )
    return {int(r[0]): float(r[1]) for r in await cur.fetchall()}


async def _ranked(
    conn: Connection, sql: str, queries: Sequence[np.ndarray], filters: Filters, limit: int | None
) -> list[tuple[int, float]]:
    """(lora id, score) rows of a ranking query over the query vectors and the filters."""
    cur = await conn.execute(sql, {"q": vectors(queries), "limit": limit, **filters.params()})
    return [(int(r[0]), float(r[1])) for r in await cur.fetchall()]


async def nearest_centroids(
    conn: Connection,
    queries: Sequence[np.ndarray],
    filters: Filters,
    *,
    limit: int,
    ef_search: int = 100,
    exact_below: int = 2000,
    force_exact: bool = False,
    walk_from: np.ndarray | None = None,
) -> CentroidCandidates:
    """The `limit` searchable LoRAs whose centroids are nearest `walk_from` (default: the mean of
    the query images), with the bounds on d_avg of docs/design.md 5 over every query
    image. The HNSW index answers (iterative scan, so filters never starve the result) unless the catalog has
    fewer than `exact_below` LoRAs or `force_exact`; then an exact scan does. Runs inside
    the caller's transaction: the planner settings are transaction-local."""
    stack = np.stack(vectors(queries))
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
        f"""
        SELECT c.lora_id, c.d, b.lb, b.ub FROM (
            SELECT lora_id, centroid, mean_radius, mean_sq_radius, centroid <-> %(mean)s AS d
            FROM lora_style_summary
            WHERE {SUMMARY_FILTER}
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
        {"mean": mean, "q": list(stack), "limit": limit, **filters.params()},
    )
    rows = await cur.fetchall()
    # The HNSW scan stops after hnsw.max_scan_tuples: a short answer from the index does not
    # prove the catalog is exhausted (a selective filter), so ask the exact scan.
    if not exact_scan and len(rows) < limit:
        return await nearest_centroids(
            conn, queries, filters, limit=limit, ef_search=ef_search, force_exact=True, walk_from=walk_from
        )
    table = np.array([(r[0], r[1], r[2], r[3]) for r in rows], dtype=np.float64).reshape(-1, 4)
    return CentroidCandidates(
        lora_ids=table[:, 0].astype(np.int64),
        distance=table[:, 1],
        lower=table[:, 2],
        upper=table[:, 3],
        exact_scan=exact_scan,
    )


async def nearest_references(
    conn: Connection, query: np.ndarray, lora_ids: Sequence[int], per_lora: int
) -> dict[int, list[NearestReference]]:
    """The per_lora references of each LoRA nearest the query: its sample transfers."""
    cur = await conn.execute(
        """
        SELECT lora_id, sample_id, blob_key, thumb_key, d FROM (
            SELECT r.lora_id, r.sample_id, r.blob_key, r.thumb_key, r.embedding::vector <-> %(q)s AS d,
                   row_number() OVER (PARTITION BY r.lora_id ORDER BY r.embedding::vector <-> %(q)s) AS n
            FROM reference_images r WHERE r.lora_id = ANY(%(ids)s) AND r.kept
        ) ranked WHERE n <= %(k)s ORDER BY lora_id, d
        """,
        {"q": query, "ids": list(lora_ids), "k": per_lora},
    )
    found: dict[int, list[NearestReference]] = {i: [] for i in lora_ids}
    for row in await cur.fetchall():
        found[int(row[0])].append(NearestReference(int(row[0]), row[1], row[2], row[3], float(row[4])))
    return found
