"""The GMI candidate step (db/spec_search.py) over the spec points' HNSW index (db/spec_index.py):
built for the stored CLIP dimension, read in order by the walks, equal to the exact scan on a
small catalog (filters, several images), and the exact scan wherever the index cannot answer."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from db import spec_search
from db.database import Database
from db.filters import Filters
from db.migrate import migrate
from db.spec_index import IndexOutcome, ensure_spec_index_at, index_name
from findlora_client.base_models import filter_group

pytestmark = pytest.mark.db

DIM = 32
N_LORAS = 60
POINTS = 10
LIMIT = 8


def unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


def load_catalog(url: str, seed: int = 0) -> list[int]:
    """N_LORAS LoRAs in families of 4, POINTS spec points each around the LoRA's centre. LoRA 0
    is hidden, every 7th is NSFW, a third are SDXL; LoRA 5's points sit on a prompt without a
    text feature (load_specs skips such rows, so the candidate step must too)."""
    rng = np.random.default_rng(seed)
    families = unit(rng.standard_normal((N_LORAS // 4, DIM)))
    centres = families[np.arange(N_LORAS) // 4] + 0.5 * rng.standard_normal((N_LORAS, DIM)) / np.sqrt(DIM)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        ids = []
        for i in range(N_LORAS):
            row = conn.execute(
                "INSERT INTO loras (slug, name, base_model, nsfw, status) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id",
                (
                    f"l{i:02d}",
                    f"L{i}",
                    "sdxl" if i % 3 == 0 else "sd1",
                    i % 7 == 3,
                    "hidden" if i == 0 else "active",
                ),
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
        prompts = []
        for j in range(POINTS):
            row = conn.execute(
                "INSERT INTO prompts (lora_id, local_id, text, text_feature)"
                " VALUES (NULL, %s, %s, %s) RETURNING id",
                (j, f"prompt {j}", unit(rng.standard_normal(4))),
            ).fetchone()
            assert row is not None
            prompts.append(int(row[0]))
        row = conn.execute(
            "INSERT INTO prompts (lora_id, local_id, text) VALUES (%s, %s, 'no feature') RETURNING id",
            (ids[5], POINTS),
        ).fetchone()
        assert row is not None
        no_feature = int(row[0])
        for i, lora_id in enumerate(ids):
            points = unit(centres[i] + 0.4 * rng.standard_normal((POINTS, DIM)) / np.sqrt(DIM))
            for n, point in enumerate(points):
                prompt = no_feature if i == 5 else prompts[n]
                conn.execute(
                    "INSERT INTO spec_points (lora_id, prompt_id, n, blob_key, image_feature)"
                    " VALUES (%s, %s, %s, '', %s)",
                    (lora_id, prompt, n if i == 5 else 0, point),
                )
        conn.execute("ANALYZE spec_points, loras, prompts")
    return ids


@pytest.fixture
def catalog(db_url: str) -> tuple[list[int], np.ndarray]:
    ids = load_catalog(db_url)
    rng = np.random.default_rng(1)
    with psycopg.connect(db_url) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT image_feature FROM spec_points ORDER BY lora_id, prompt_id").fetchall()
    points = np.stack([r[0].to_numpy() for r in rows])
    # Query images near stored points of random LoRAs: unseen images of those styles.
    picks = rng.choice(len(points), 12, replace=False)
    return ids, unit(points[picks] + 0.3 * rng.standard_normal((12, DIM)) / np.sqrt(DIM))


def test_index_built_for_the_stored_dimension_and_read_in_order(db_url: str) -> None:
    assert ensure_spec_index_at(db_url) is None  # no spec yet: the dimension is unknown
    load_catalog(db_url)
    assert ensure_spec_index_at(db_url) == IndexOutcome.CREATED
    assert ensure_spec_index_at(db_url) == IndexOutcome.PRESENT
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT pg_get_indexdef(%s::regclass)", (index_name(DIM),)).fetchone()
        assert row is not None
        definition = str(row[0])
        assert "USING hnsw (((image_feature)::vector(32)) vector_l2_ops)" in definition
        assert "WHERE (vector_dims(image_feature) = 32)" in definition
        # The walk's own statement, planned as the walk plans it, reads the index in order.
        conn.execute("SET LOCAL enable_seqscan = off")
        query = unit(np.ones(DIM))
        register_vector(conn)
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN " + spec_search.walk_sql(DIM), {"q": query, **Filters(base_model="sd1").params()}
            )
        )
        assert f"Index Scan using {index_name(DIM)} on spec_points" in plan, plan
        assert "Sort" not in plan, plan
    # A dropped index comes back with the next migration (the migration role's path).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {index_name(DIM)}")
    migrate(db_url)
    assert ensure_spec_index_at(db_url) == IndexOutcome.PRESENT


QUERY_CASES = {
    "one image": ([0], Filters(allow_nsfw=True)),
    "one image, default filters": ([1], Filters()),
    "one image, base model": ([2], Filters(base_model="sd1")),
    "two images": ([3, 4], Filters(allow_nsfw=True)),
    "three images, base model": ([5, 6, 7], Filters(base_model="sdxl", allow_nsfw=True)),
    "two images, default filters": ([8, 9], Filters()),
}


@pytest.mark.parametrize("case", list(QUERY_CASES))
async def test_walks_equal_the_exact_scan(
    db: Database, db_url: str, catalog: tuple[list[int], np.ndarray], case: str
) -> None:
    ids, queries = catalog
    assert ensure_spec_index_at(db_url) == IndexOutcome.CREATED
    picked, filters = QUERY_CASES[case]
    images = list(queries[picked])
    async with db.search_connection() as conn:
        walked = await spec_search.nearest_spec_loras(
            conn, images, filters, limit=LIMIT, exact_below=0, ef_search=200
        )
        exact = await spec_search.exact_nearest_spec_loras(conn, images, filters, limit=LIMIT)
    assert not walked.exact_scan
    assert walked.proven
    assert walked.lora_ids == [i for i, _ in exact]
    assert [d for _, d in walked.ranked] == pytest.approx([d for _, d in exact], abs=1e-5)
    assert ids[0] not in walked.lora_ids
    assert ids[5] not in walked.lora_ids
    # A brute force over the stored rows the filters keep agrees.
    assert [d for _, d in exact] == pytest.approx(_brute(db_url, images, filters)[:LIMIT], abs=1e-5)


def _brute(url: str, images: list[np.ndarray], filters: Filters) -> list[float]:
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT s.lora_id, s.image_feature, l.base_model, l.nsfw, l.status, p.text_feature IS NOT NULL"
            " FROM spec_points s JOIN loras l ON l.id = s.lora_id JOIN prompts p ON p.id = s.prompt_id"
        ).fetchall()
    nearest: dict[int, list[float]] = {}
    group = filter_group(filters.base_model)
    for lora_id, feature, base, nsfw, status, has_text in rows:
        if status != "active" or not has_text or (nsfw and not filters.allow_nsfw):
            continue
        if group.ids and base not in group.ids:
            continue
        d = [float(np.linalg.norm(feature.to_numpy() - q)) for q in images]
        nearest[lora_id] = [min(a, b) for a, b in zip(nearest.get(lora_id, d), d, strict=True)]
    return sorted(float(np.mean(d)) for d in nearest.values())


async def test_exact_scan_where_the_walks_cannot_answer(
    db: Database, db_url: str, catalog: tuple[list[int], np.ndarray]
) -> None:
    _, queries = catalog
    images = list(queries[:2])
    filters = Filters(allow_nsfw=True)
    async with db.search_connection() as conn:
        exact = await spec_search.exact_nearest_spec_loras(conn, images, filters, limit=LIMIT)
        no_index = await spec_search.nearest_spec_loras(conn, images, filters, limit=LIMIT, exact_below=0)
    assert no_index.exact_scan
    assert no_index.ranked == exact
    assert ensure_spec_index_at(db_url) == IndexOutcome.CREATED
    async with db.search_connection() as conn:
        small = await spec_search.nearest_spec_loras(conn, images, filters, limit=LIMIT, exact_below=10_000)
        # More candidates than LoRAs pass the filter: the walks run out, the scan answers.
        everything = await spec_search.nearest_spec_loras(conn, images, filters, limit=N_LORAS, exact_below=0)
        every = await spec_search.exact_nearest_spec_loras(conn, images, filters, limit=N_LORAS)
        # Another CLIP's dimension: no index, and no stored point of that dimension to compare.
        other = await spec_search.nearest_spec_loras(
            conn, [unit(np.ones(DIM // 2))], filters, limit=LIMIT, exact_below=0
        )
        walked = await spec_search.nearest_spec_loras(conn, images, filters, limit=LIMIT, exact_below=0)
    assert small.exact_scan
    assert small.ranked == exact
    assert everything.exact_scan
    assert everything.ranked == every
    assert len(every) == N_LORAS - 2  # hidden, and no prompt feature
    assert other.exact_scan
    assert other.ranked == []
    assert not walked.exact_scan
    assert walked.lora_ids == [i for i, _ in exact]


async def test_the_runtime_role_may_not_build_the_index(
    server_url: str, db_url: str, catalog: tuple[list[int], np.ndarray]
) -> None:
    """The service's least-privilege role owns no table: its request is refused (and logged) and
    search keeps the exact scan; `findlora db migrate` (the owner) builds the index."""
    role = f"spec_runtime_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        migrate(db_url, runtime_role=role)  # grants DML; the owner would build the index here too
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"DROP INDEX {index_name(DIM)}")
        as_runtime = psycopg.conninfo.make_conninfo(db_url, user=role)
        assert ensure_spec_index_at(as_runtime) == IndexOutcome.NOT_PERMITTED
        runtime_db = await Database.open(as_runtime, max_size=1)
        try:
            async with runtime_db.search_connection() as conn:
                found = await spec_search.nearest_spec_loras(
                    conn, list(catalog[1][:1]), Filters(), limit=LIMIT, exact_below=0
                )
        finally:
            await runtime_db.close()
        assert found.exact_scan
        assert len(found.ranked) == LIMIT
        migrate(db_url, runtime_role=role)
        assert ensure_spec_index_at(as_runtime) == IndexOutcome.PRESENT
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


def test_two_builders_at_once_both_succeed(db_url: str) -> None:
    """A second builder (a worker, a replica's migration) arrives while the first one's CREATE
    INDEX CONCURRENTLY waits for a writer to finish. Waiting for the lock inside a statement held a
    snapshot the build then waited for: PostgreSQL broke that deadlock by failing one of them."""
    load_catalog(db_url)
    outcomes: dict[str, object] = {}

    def run(name: str, work: Callable[[], object]) -> None:
        try:
            outcomes[name] = work()
        except Exception as exc:
            outcomes[name] = exc

    with psycopg.connect(db_url) as writer:
        writer.execute("UPDATE spec_points SET blob_key = blob_key WHERE false")  # a write in flight
        first = threading.Thread(target=run, args=("first", lambda: ensure_spec_index_at(db_url)))
        first.start()
        with psycopg.connect(db_url, autocommit=True) as monitor:
            for _ in range(200):  # until the build waits for the writer
                row = monitor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%'"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                if row is not None and row[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the first build never waited for the writer")
        others = [
            threading.Thread(target=run, args=("second", lambda: ensure_spec_index_at(db_url))),
            threading.Thread(target=run, args=("migration", lambda: migrate(db_url))),
        ]
        for thread in others:
            thread.start()
        time.sleep(1.5)  # PostgreSQL's deadlock_timeout is 1 s: a deadlock would be found by now
        writer.commit()
    for thread in (first, *others):
        thread.join(60)
    assert outcomes == {"first": IndexOutcome.CREATED, "second": IndexOutcome.PRESENT, "migration": []}
