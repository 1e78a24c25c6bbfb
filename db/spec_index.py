"""The HNSW index on spec points (docs/design.md 5, "GMI candidates").

spec_points.image_feature is an untyped `vector`: its dimension follows the CLIP model the
catalog's specs were embedded with, so no migration can index it. Once that model is known (a
stored spec feature says its dimension) an expression index on `image_feature::vector(D)`,
partial to the rows of that dimension, is built: `findlora db migrate` (and the embedded
database's start-up migration), service start-up with GMI on, and every spec write ask for it.

Building an index needs the table's owner. The runtime role (db/privileges.py) owns nothing,
so where the service runs as that role the request is refused, logged with the command that
builds it, and the candidate step keeps its exact scan until `findlora db migrate` runs.
Built CONCURRENTLY (writers are not blocked) on an autocommit connection of its own, one
builder at a time per dimension (an advisory lock), so a build that was interrupted (an
invalid index left behind) is dropped and started again by the next request.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import cast

import psycopg
import structlog
from psycopg import sql

from db.advisory import advisory_lock

log = structlog.get_logger(__name__)

_LOCK_CLASS = 0x73706563  # "spec": advisory lock (class, dimension) around a build


class IndexOutcome(StrEnum):
    PRESENT = "present"  # a valid index already existed
    CREATED = "created"
    NOT_PERMITTED = "not_permitted"  # this role does not own spec_points


def index_name(dim: int) -> str:
    return f"spec_points_image_feature_{int(dim)}_hnsw"


def feature_expression(dim: int, alias: str = "") -> str:
    """The indexed expression; a query's ORDER BY must spell it the same way to use the index."""
    return f"({alias}image_feature::vector({int(dim)}))"


def dimension_predicate(dim: int, alias: str = "") -> str:
    """The index's partial predicate; a query must state it to use the index."""
    return f"vector_dims({alias}image_feature) = {int(dim)}"


# Validity: a CONCURRENTLY build in progress, or one that failed, leaves an invalid index that
# the planner ignores.
READY_SQL = """
    SELECT i.indisvalid FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = 'spec_points'::regclass AND c.relname = %s
"""


def _create_sql(dim: int) -> sql.Composed:
    return sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON spec_points"
        " USING hnsw ({expr} vector_l2_ops) WHERE {predicate}"
    ).format(
        name=sql.Identifier(index_name(dim)),
        expr=sql.SQL(feature_expression(dim)),
        predicate=sql.SQL(dimension_predicate(dim)),
    )


def stored_dimension(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The dimension of a stored spec feature: the catalog's CLIP model (one at a time; a model
    switch re-imports every spec). None while no spec has features."""
    row = conn.execute(
        "SELECT vector_dims(image_feature) FROM spec_points WHERE image_feature IS NOT NULL LIMIT 1"
    ).fetchone()
    return None if row is None else cast(int, row[0])


def ensure_spec_index(conn: psycopg.Connection[tuple[object, ...]], dim: int) -> IndexOutcome:
    """Build the index for `dim` unless a valid one exists. `conn` must be in autocommit mode
    (CREATE INDEX CONCURRENTLY cannot run in a transaction)."""
    if dim <= 0:
        raise ValueError(f"a spec feature dimension must be positive, not {dim}")
    name = index_name(dim)
    if _valid(conn, name):
        return IndexOutcome.PRESENT
    with advisory_lock(conn, _LOCK_CLASS, dim):
        return _build(conn, name, dim)


def _build(conn: psycopg.Connection[tuple[object, ...]], name: str, dim: int) -> IndexOutcome:
    """ensure_spec_index's work, under its lock."""
    state = _state(conn, name)
    if state is True:  # another process finished it while this one waited
        return IndexOutcome.PRESENT
    try:
        if state is False:  # a build that did not finish: its builder held the lock, and is gone
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
        log.info("spec_index_building", index=name, dimension=dim)
        conn.execute(_create_sql(dim))
    except psycopg.errors.InsufficientPrivilege:
        log.warning(
            "spec_index_not_permitted",
            index=name,
            dimension=dim,
            hint="this role does not own spec_points: run `findlora db migrate` as the migration "
            "role to build it; until then the GMI candidate step scans every spec point",
        )
        return IndexOutcome.NOT_PERMITTED
    log.info("spec_index_built", index=name, dimension=dim)
    return IndexOutcome.CREATED


def ensure_catalog_spec_index(conn: psycopg.Connection[tuple[object, ...]]) -> IndexOutcome | None:
    """The index for the catalog's stored spec dimension; None while no spec has features."""
    dim = stored_dimension(conn)
    return None if dim is None else ensure_spec_index(conn, dim)


def ensure_spec_index_at(url: str, dim: int | None = None) -> IndexOutcome | None:
    """ensure_spec_index on a connection of its own (`dim` None: the stored dimension)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return ensure_catalog_spec_index(conn) if dim is None else ensure_spec_index(conn, dim)


async def ensure_spec_index_async(url: str, dim: int | None = None) -> IndexOutcome | None:
    """ensure_spec_index_at off the event loop: a first build may take minutes."""
    return await asyncio.to_thread(ensure_spec_index_at, url, dim)


def _state(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool | None:
    """True: a valid index; False: an invalid one (being built, or a failed build); None: none."""
    row = conn.execute(READY_SQL, (name,)).fetchone()
    return None if row is None else bool(row[0])


def _valid(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    return _state(conn, name) is True
