"""The GMI branch's candidates (docs/design.md 5, "GMI candidates"): the LoRAs whose spec points
lie nearest the query's CLIP image features.

A LoRA's distance is the mean over the query images of its nearest spec point. Above
`exact_below` spec points, and where the HNSW index for the query's dimension is valid
(db/spec_index.py), one index walk per query image answers; otherwise an exact scan does.

The walk: per image, spec points in ascending distance (HNSW iterative scan, the filters
checked inside the scan, so they never starve it) until `depth` distinct LoRAs, plus a margin,
are reached. The scan's relaxed order (pgvector's strict order drops the closer points a
continued search finds, and lost a fifth of a filtered query's candidates in the bench) returns
points slightly out of order, so each LoRA keeps the nearest of its points seen and the walk's
LoRAs are re-sorted by it; a single-image query's candidates are the first `limit` of them.
With several images, the union of the walks' first `depth` LoRAs is scored exactly (one query
over just their points), and a LoRA outside the union lies, for every image i, at least as far
as walk i's depth-th LoRA, so its mean is at least tau = the mean of those distances: once the
union's limit-th best is within tau the union's top `limit` is the exact one (the threshold
algorithm, exact up to the index's own recall); otherwise the walks go twice as deep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog
from psycopg import AsyncServerCursor

from db.database import Connection
from db.filters import LORA_FILTER, Filters
from db.spec_index import READY_SQL, dimension_predicate, feature_expression, index_name
from db.specs import SPEC_ROWS

log = structlog.get_logger(__name__)

# Spec points below which the exact scan answers: bench spec-search at 30k points had the walks
# 5x faster for one image but only 1.3x for several (their threshold stop walks deeper).
EXACT_BELOW = 20_000
MAX_DEPTH_FACTOR = 4  # the walks go at most this many times `limit` LoRAs deep
# Relaxed order: a walk meets this share more LoRAs than it ranks, so that a LoRA whose nearest
# point comes a little late still takes its place.
WALK_MARGIN = 0.25


@dataclass(frozen=True)
class SpecCandidates:
    ranked: list[tuple[int, float]]  # (lora id, mean nearest-point distance), ascending
    exact_scan: bool  # no index walk: small catalog, no valid index, or a walk that ran out
    points_walked: int = 0  # spec points the walks returned, all query images together
    depth: int = 0  # LoRAs per walk when the walks stopped
    proven: bool = True  # False: the walks hit their depth bound before the threshold held
    details: dict[str, object] = field(default_factory=dict)

    @property
    def lora_ids(self) -> list[int]:
        return [lora_id for lora_id, _ in self.ranked]


def _vectors(queries: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(q, dtype=np.float32) for q in queries]


def _nearest_sql(dim: int, where: str = "TRUE") -> str:
    """(lora_id, d): per LoRA passing the filters and `where`, the mean over %(q)s of its
    nearest spec point of dimension `dim`."""
    return f"""
        SELECT lora_id, avg(d) AS d FROM (
            SELECT s.lora_id, q.i, min(s.image_feature <-> q.v) AS d
            FROM unnest(%(q)s::vector[]) WITH ORDINALITY AS q(v, i) CROSS JOIN {SPEC_ROWS}
              AND {dimension_predicate(dim, "s.")} AND {where}
            GROUP BY s.lora_id, q.i
        ) nearest
        GROUP BY lora_id
    """


def walk_sql(dim: int) -> str:
    """Spec points of dimension `dim` in ascending distance from %(q)s, over the HNSW index.
    The filters are scalar subqueries on purpose: as joins the planner would sort their result
    instead of reading the index in order; as a filter of the index scan they are checked point
    by point while the iterative scan goes on."""
    expr = feature_expression(dim, "s.")
    return f"""
        SELECT s.lora_id, {expr} <-> %(q)s AS d
        FROM spec_points s
        WHERE {dimension_predicate(dim, "s.")}
          AND (SELECT {LORA_FILTER} FROM loras l WHERE l.id = s.lora_id)
          AND (SELECT p.text_feature IS NOT NULL FROM prompts p WHERE p.id = s.prompt_id)
        ORDER BY {expr} <-> %(q)s
    """


async def exact_nearest_spec_loras(
    conn: Connection, queries: Sequence[np.ndarray], filters: Filters, *, limit: int
) -> list[tuple[int, float]]:
    """The exact scan: every spec point passing the filters, `limit` rows back to Python."""
    q = _vectors(queries)
    cur = await conn.execute(
        _nearest_sql(len(q[0])) + " ORDER BY d, lora_id LIMIT %(limit)s",
        {"q": q, "limit": limit, **filters.params()},
    )
    return [(int(r[0]), float(r[1])) for r in await cur.fetchall()]


async def nearest_spec_loras(
    conn: Connection,
    queries: Sequence[np.ndarray],
    filters: Filters,
    *,
    limit: int,
    exact_below: int = EXACT_BELOW,
    ef_search: int = 100,
    force_exact: bool = False,
) -> SpecCandidates:
    """The `limit` LoRAs whose spec points lie nearest the query images (same rows and filters
    as db.specs.load_specs), as (lora id, distance) ascending: the index walks of the module
    docstring, or the exact scan. Runs inside the caller's transaction (its planner settings
    and cursors are transaction-local)."""
    q = _vectors(queries)
    if limit <= 0 or not q:
        return SpecCandidates([], exact_scan=True)
    dim = len(q[0])
    if not force_exact:
        cur = await conn.execute(
            f"SELECT c.reltuples, ({READY_SQL.replace('%s', '%(name)s')})"
            " FROM pg_class c WHERE c.oid = 'spec_points'::regclass",
            {"name": index_name(dim)},
        )
        row = await cur.fetchone()
        # reltuples is -1 before the first ANALYZE: small, unless every size walks (0).
        if row is not None and row[1] is True and (exact_below <= 0 or float(row[0]) >= exact_below):
            walked = await _walk(conn, q, filters, limit, dim, ef_search)
            if walked is not None:
                return walked
    ranked = await exact_nearest_spec_loras(conn, q, filters, limit=limit)
    return SpecCandidates(ranked, exact_scan=True)


@dataclass
class _Walk:
    """One query image's walk: each LoRA met, with the nearest of its points seen so far."""

    cursor: AsyncServerCursor[tuple[int, float]]
    nearest: dict[int, float] = field(default_factory=dict)
    points: int = 0
    ended: bool = False

    async def reach(self, loras: int) -> None:
        """Fetch points until `loras` distinct LoRAs (or the walk ends)."""
        while len(self.nearest) < loras and not self.ended:
            # Points per new LoRA so far (a LoRA has tens of points, not all of them near).
            per_lora = self.points / len(self.nearest) if self.nearest else 4.0
            want = max(64, math.ceil((loras - len(self.nearest)) * max(per_lora, 1.0) * 1.2))
            rows = await self.cursor.fetchmany(want)
            self.points += len(rows)
            self.ended = len(rows) < want
            for lora_id, d in rows:
                if d < self.nearest.get(lora_id, math.inf):
                    self.nearest[lora_id] = float(d)

    def head(self, depth: int) -> list[tuple[int, float]]:
        """The `depth` LoRAs met whose nearest point is nearest, ascending (ties by id)."""
        return sorted(self.nearest.items(), key=lambda item: (item[1], item[0]))[:depth]


async def _walk(
    conn: Connection, q: list[np.ndarray], filters: Filters, limit: int, dim: int, ef_search: int
) -> SpecCandidates | None:
    """The index walks; None when a walk ran out before reaching its depth (the index scan
    stops after hnsw.max_scan_tuples, so a short walk proves nothing): the caller scans."""
    # The first search's candidate list: a walk reads thousands of points, and the ones the
    # first search does not find come late or never (bench: ef 1000 against 400 lifted a
    # filtered query's candidate recall from 0.85 to 0.89 at 300k points, at the same speed).
    cur = await conn.execute(
        "SELECT current_setting('enable_seqscan'),"
        " set_config('hnsw.ef_search', %(ef)s, true),"
        " set_config('hnsw.iterative_scan', 'relaxed_order', true)",
        {"ef": str(max(ef_search, min(limit * 10, 1000)))},
    )
    row = await cur.fetchone()
    seqscan = str(row[0]) if row else "on"
    walks: list[_Walk] = []
    try:
        # Planned with sequential scans off: the walk must read the index in order, never
        # sort the catalog (the caller chose the index, above exact_below). Restored at once,
        # so the exact queries after it plan as usual.
        await conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
        params = filters.params()
        for i, vector in enumerate(q):
            cursor: AsyncServerCursor[tuple[int, float]] = conn.cursor(f"spec_walk_{i}")
            walks.append(_Walk(cursor))
            await cursor.execute(walk_sql(dim), {"q": vector, **params})
        await conn.execute("SELECT set_config('enable_seqscan', %s, true)", (seqscan,))
        depth = limit
        while True:
            for walk in walks:
                await walk.reach(math.ceil(depth * (1 + WALK_MARGIN)))
            points = sum(w.points for w in walks)
            if any(len(w.nearest) < depth for w in walks):
                log.debug("spec_walk_ran_out", depth=depth, points=points)
                return None
            heads = [w.head(depth) for w in walks]
            if len(walks) == 1:
                return SpecCandidates(heads[0][:limit], False, points, depth)
            union = sorted({i for head in heads for i, _ in head})
            cur = await conn.execute(
                _nearest_sql(dim, "s.lora_id = ANY(%(ids)s)") + " ORDER BY d, lora_id",
                {"q": q, "ids": union, **params},
            )
            ranked = [(int(r[0]), float(r[1])) for r in await cur.fetchall()]
            tau = float(np.mean([head[-1][1] for head in heads]))
            proven = len(ranked) >= limit and ranked[limit - 1][1] <= tau
            if proven or depth >= limit * MAX_DEPTH_FACTOR:
                if not proven:
                    log.debug("spec_walk_unproven", depth=depth, points=points, tau=tau)
                return SpecCandidates(
                    ranked[:limit], False, points, depth, proven, {"union": len(union), "tau": tau}
                )
            depth *= 2
    finally:
        for walk in walks:
            await walk.cursor.close()
