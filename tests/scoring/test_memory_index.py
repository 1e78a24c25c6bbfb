"""The in-memory centroid index: the exhaustive ranking on both of its paths, and every catalog
change visible to the very next search through the same index object."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from db import ranking, summaries
from db.catalog import refresh_style_summary, replace_lora
from db.database import Database
from db.encoders import EncoderChanged, label_guard
from db.filters import Filters
from db.rows import NewLora, ReferenceRow
from inference_service.scoring.two_stage import RankStats
from inference_service.search.centroids import TwoStageOptions, rank_d_avg
from inference_service.search.memory_index import CentroidIndex, IndexConfig
from inference_service.search.memory_view import MAX_CACHED_MASKS, MIN_WALK_SHARE, HnswWalk
from lab.bench.load import LoadedCatalog, load_catalog
from lab.bench.search_bench import make_queries
from lab.bench.search_peers import FilterMasks
from lab.bench.synthetic import SyntheticCatalog

pytestmark = pytest.mark.db
N_LORAS, N_REFS = 400, 8
OPTIONS = TwoStageOptions(first_batch=16)  # small batches: the frontier has to do its job
HNSW, SCAN = 0, 50_000  # exact_below forcing the graph walk (single images) / the exact scan
HELD, UNHELD = 4096, 0  # references_mb: exact scoring in the service's memory / in PostgreSQL
PATHS = [(SCAN, HELD), (HNSW, HELD), (SCAN, UNHELD), (HNSW, UNHELD)]
PATH_IDS = ["exact-scan", "hnsw", "exact-scan-postgres-scores", "hnsw-postgres-scores"]
Ranked = list[tuple[int, float]]


@pytest.fixture
async def loaded(db: Database, db_url: str) -> tuple[SyntheticCatalog, LoadedCatalog]:
    catalog = SyntheticCatalog(N_LORAS, seed=21)
    return catalog, await load_catalog(db_url, catalog, N_REFS, seed=21, progress=lambda n: None)


async def ranked_as_exhaustive(
    db: Database, index: CentroidIndex, queries: Sequence[np.ndarray], filters: Filters, k: int = 10
) -> tuple[Ranked, RankStats]:
    """The index's ranking, checked against the exhaustive one on the catalog as it is now."""
    async with db.connection() as conn:
        truth = await ranking.rank_exhaustive(conn, queries, filters, limit=k)
    got, stats = await rank_d_avg(db, queries, limit=k, filters=filters, options=OPTIONS, index=index)
    assert [i for i, _ in got] == [i for i, _ in truth]
    assert np.allclose([d for _, d in got], [d for _, d in truth], atol=1e-5)
    return got, stats


def near(query: np.ndarray, rng: np.random.Generator, spread: float = 0.05) -> list[ReferenceRow]:
    """N_REFS references close around `query` (sample ids as lab.bench.load stores them)."""
    refs = query + spread * rng.standard_normal((N_REFS, len(query)))
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    return [
        ReferenceRow(f"s{i:03d}", "", "", "", ref.astype(np.float32), True, 1.0) for i, ref in enumerate(refs)
    ]


@pytest.mark.parametrize(("exact_below", "references_mb"), PATHS, ids=PATH_IDS)
async def test_memory_index_equals_exhaustive(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog], exact_below: int, references_mb: int
) -> None:
    catalog, meta = loaded
    index = CentroidIndex(db, IndexConfig(exact_below=exact_below, references_mb=references_mb))
    await index.build()
    queries = make_queries(catalog, meta.base_model, meta.active, 16, seed=22)
    # The default filter (no NSFW) on single images too: the walk skips those rows.
    queries += [q.__class__(q.embeddings, Filters(), "single") for q in queries if q.kind == "single"][:3]
    admitted = FilterMasks(meta)
    filtered_paths = set()  # walked or not, for base-model filters
    for query in queries:
        # One image walks while its filters admit enough of the graph (sd1's share here, not flux's).
        share = float(admitted(query.filters).mean())
        walked = exact_below == HNSW and len(query.embeddings) == 1 and share >= MIN_WALK_SHARE
        if query.filters.base_model:
            filtered_paths.add(walked)
        for k in (10, 100):
            _, stats = await ranked_as_exhaustive(db, index, query.embeddings, query.filters, k)
            assert stats.details["centroid_index"] == "memory"
            assert stats.details["scoring"] == ("memory" if references_mb else "database")
            assert stats.details["exact_scan"] is not walked, (query.kind, share, k)
            if k == 10:
                assert stats.scored < N_LORAS  # the bounds pruned
    if exact_below == HNSW:  # base-model filters took both paths
        assert filtered_paths == {True, False}


@pytest.mark.parametrize(("exact_below", "references_mb"), PATHS[:3], ids=PATH_IDS[:3])
async def test_every_change_reaches_the_next_search_through_the_same_index(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog], exact_below: int, references_mb: int
) -> None:
    catalog, meta = loaded
    index = CentroidIndex(db, IndexConfig(exact_below=exact_below, references_mb=references_mb))
    await index.build()
    rng = np.random.default_rng(23)
    owner = int(np.flatnonzero(meta.active)[5])
    query = list(catalog.queries(np.array([owner]), rng))
    anything = Filters(allow_nsfw=True)
    before, _ = await ranked_as_exhaustive(db, index, query, anything)

    # A takedown: the LoRA leaves the very next search.
    top = before[0][0]
    async with db.transaction() as conn:
        await conn.execute("UPDATE loras SET status = 'taken_down' WHERE id = %s", (top,))
    got, stats = await ranked_as_exhaustive(db, index, query, anything)
    assert top not in [i for i, _ in got]
    assert stats.details["centroid_index"] == "memory"

    # A new LoRA right where the query is: first at once. (On the graph path its row is not in
    # the graph yet; the walk yields it whole, or scans exactly while a thread adds it.)
    async with db.connection() as conn:
        lora = NewLora(slug="fresh", name="Fresh", base_model="sd1")
        fresh = await replace_lora(conn, lora, near(query[0], rng))
    got, _ = await ranked_as_exhaustive(db, index, query, anything)
    assert got[0][0] == fresh

    # A changed centroid: the LoRA farthest from the query moves next to it.
    async with db.connection() as conn:
        everyone = await ranking.rank_exhaustive(conn, query, anything, limit=None)
        far = everyone[-1][0]
        cur = await conn.execute("SELECT slug, name, base_model FROM loras WHERE id = %s", (far,))
        slug, name, base = await cur.fetchone() or ("", "", "")
        await replace_lora(conn, NewLora(slug=slug, name=name, base_model=base), near(query[0], rng))
    got, _ = await ranked_as_exhaustive(db, index, query, anything)
    assert far in [i for i, _ in got[:2]]

    # A deleted summary (no kept reference left): gone from the index's rows too.
    async with db.transaction() as conn:
        await conn.execute("UPDATE reference_images SET kept = false WHERE lora_id = %s", (fresh,))
        await refresh_style_summary(conn, fresh)
    got, _ = await ranked_as_exhaustive(db, index, query, anything)
    assert fresh not in [i for i, _ in got]
    view = index.view
    assert view is not None
    assert fresh not in view.lora_ids[view.alive].tolist()
    assert view.lora_ids[view.alive].tolist().count(far) == 1
    if references_mb:  # the changed LoRA's new references are the ones its live row scores with
        row = int(np.flatnonzero(view.alive & (view.lora_ids == far))[0])
        assert view.references is not None
        async with db.connection() as conn:
            (held,) = (await summaries.load_reference_blocks(conn, 128, np.array([far]))).counts
        assert view.references.count[row] == held == N_REFS
    async with db.connection() as conn:
        assert view.generation == await summaries.catalog_generation(conn)
    assert index.rebuilds == 1  # every change above came as a delta


async def test_the_graph_walk_yields_rows_not_in_the_graph_yet(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog]
) -> None:
    catalog, meta = loaded
    index = CentroidIndex(db, IndexConfig(exact_below=HNSW))
    await index.build()
    rng = np.random.default_rng(26)
    query = list(catalog.queries(np.array([int(np.flatnonzero(meta.active)[2])]), rng))
    async with db.connection() as conn:
        fresh = await replace_lora(
            conn, NewLora(slug="fresh", name="Fresh", base_model="sd1"), near(query[0], rng)
        )
    async with db.search_connection(snapshot=True) as conn:
        view = await index.sync(conn)
        assert view is not None
        assert view.graph.rows == len(view) - 1  # added to the graph in a thread, later
        source = view.source(query, Filters(allow_nsfw=True), 10, OPTIONS)
        assert isinstance(source, HnswWalk)
        first = await source.next_batch()
    assert fresh in first.lora_ids.tolist()
    assert np.isfinite(first.frontier)  # the walk goes on over the graph, the new row came whole


async def test_an_encoder_switch_rebuilds_and_postgres_serves_meanwhile(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog]
) -> None:
    catalog, meta = loaded
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO catalog_meta (key, value) VALUES ('style_encoder', 'enc-a')")
    index = CentroidIndex(db, IndexConfig(delta_rows=20, delta_fraction=0.0))
    await index.build()
    query = list(catalog.queries(np.array([int(np.flatnonzero(meta.active)[0])]), np.random.default_rng(24)))
    # An activation's transaction: the label and every summary together (here: rewritten as is).
    async with db.transaction() as conn:
        await conn.execute("UPDATE catalog_meta SET value = 'enc-b' WHERE key = 'style_encoder'")
        await conn.execute("UPDATE lora_style_summary SET centroid = centroid")
    with pytest.raises(EncoderChanged):  # a query of the old encoder never reaches any index
        await rank_d_avg(db, query, limit=10, guard=label_guard("enc-a"), index=index)
    async with db.connection() as conn:
        truth = await ranking.rank_exhaustive(conn, query, Filters(), limit=10)
    got, stats = await rank_d_avg(db, query, limit=10, guard=label_guard("enc-b"), index=index)
    assert [i for i, _ in got] == [i for i, _ in truth]
    assert stats.details["centroid_index"] == "database"  # 400 changed rows > 20: rebuilding
    await index.wait_ready()
    assert index.rebuilds == 2
    got, stats = await rank_d_avg(db, query, limit=10, guard=label_guard("enc-b"), index=index)
    assert [i for i, _ in got] == [i for i, _ in truth]
    assert stats.details["centroid_index"] == "memory"


async def test_a_snapshot_older_than_the_index_gets_no_view(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog]
) -> None:
    _, meta = loaded
    index = CentroidIndex(db)
    built = await index.build()
    async with db.search_connection(snapshot=True) as old:
        assert await index.sync(old) is built  # this snapshot is the index's generation
        async with db.transaction() as conn:
            await conn.execute("UPDATE loras SET nsfw = NOT nsfw WHERE id = %s", (int(meta.lora_ids[0]),))
        async with db.search_connection(snapshot=True) as new:
            newer = await index.sync(new)
        assert newer is not None
        assert newer.generation > built.generation
        assert await index.sync(old) is None  # it would see a change its snapshot does not


async def test_superseded_rows_are_compacted_by_a_background_rebuild(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog]
) -> None:
    catalog, meta = loaded
    index = CentroidIndex(db, IndexConfig(delta_rows=3, delta_fraction=0.0))
    await index.build()
    query = list(catalog.queries(np.array([int(np.flatnonzero(meta.active)[1])]), np.random.default_rng(25)))
    for pair in (meta.lora_ids[:2], meta.lora_ids[2:4]):  # two deltas of 2 rows: 4 dead > 3
        async with db.transaction() as conn:
            await conn.execute("UPDATE loras SET nsfw = NOT nsfw WHERE id = ANY(%s)", (pair.tolist(),))
        _, stats = await ranked_as_exhaustive(db, index, query, Filters())
        assert stats.details["centroid_index"] == "memory"  # served on while compacting
    await index.wait_ready()
    assert index.rebuilds == 2
    view = index.view
    assert view is not None
    assert len(view) == view.live == N_LORAS  # no dead rows left
    _, stats = await ranked_as_exhaustive(db, index, query, Filters())
    assert stats.details["centroid_index"] == "memory"


async def test_an_index_built_on_an_empty_catalog_takes_its_first_loras(db: Database) -> None:
    index = CentroidIndex(db, IndexConfig(exact_below=HNSW))
    empty = await index.build()
    assert len(empty) == 0
    rng = np.random.default_rng(27)
    query = [rng.standard_normal(128).astype(np.float32)]
    query[0] /= np.linalg.norm(query[0])
    async with db.transaction() as conn:
        for i in range(N_REFS):
            await conn.execute(
                "INSERT INTO samples (id, blob_key, sha256) VALUES (%s, '', '')", (f"s{i:03d}",)
            )
    async with db.connection() as conn:
        first = await replace_lora(
            conn, NewLora(slug="first", name="First", base_model="sd1"), near(query[0], rng)
        )
        await replace_lora(
            conn, NewLora(slug="second", name="Second", base_model="sdxl"), near(-query[0], rng)
        )
    got, stats = await ranked_as_exhaustive(db, index, query, Filters())
    assert got[0][0] == first
    assert stats.details["centroid_index"] == "memory"


async def test_a_current_view_that_scores_in_memory_needs_one_statement_and_no_snapshot(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CentroidIndex.current: while the view is the catalog's generation and holds its references, a
    search reads the generation and the guard's label in one statement and opens no search
    snapshot; a change sends the next search through sync, and the guard still refuses a query of
    another encoder on the short path."""
    catalog, meta = loaded
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO catalog_meta (key, value) VALUES ('style_encoder', 'enc-a')")
    index = CentroidIndex(db, IndexConfig(references_mb=HELD))
    await index.build()
    snapshots = 0
    open_snapshot = db.search_connection

    def counted(*args: object, **kwargs: bool) -> object:
        nonlocal snapshots
        snapshots += 1
        return open_snapshot(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(db, "search_connection", counted)
    query = list(catalog.queries(np.array([int(np.flatnonzero(meta.active)[3])]), np.random.default_rng(28)))
    guard = label_guard("enc-a")
    got, stats = await rank_d_avg(db, query, limit=10, guard=guard, options=OPTIONS, index=index)
    assert (snapshots, stats.details["scoring"]) == (0, "memory")
    async with db.transaction() as conn:  # a change: the next search syncs, the one after needs none
        await conn.execute("UPDATE loras SET status = 'taken_down' WHERE id = %s", (got[0][0],))
    after, _ = await ranked_as_exhaustive(db, index, query, Filters())
    assert got[0][0] not in [i for i, _ in after]
    assert snapshots == 1
    again, _ = await ranked_as_exhaustive(db, index, query, Filters())
    assert (again, snapshots) == (after, 1)
    async with db.transaction() as conn:  # the label alone moves: the generation does not
        await conn.execute("UPDATE catalog_meta SET value = 'enc-b' WHERE key = 'style_encoder'")
    with pytest.raises(EncoderChanged):
        await rank_d_avg(db, query, limit=10, guard=guard, options=OPTIONS, index=index)
    assert snapshots == 1


async def test_a_view_keeps_a_bounded_number_of_filter_masks(
    db: Database, loaded: tuple[SyntheticCatalog, LoadedCatalog]
) -> None:
    """Every unknown base model a client names is a filter of its own: a mask per name, a byte per
    row, for the view's whole life, unless the view drops the least recently used."""
    index = CentroidIndex(db, IndexConfig())
    await index.build()
    async with db.search_connection(snapshot=True) as conn:
        view = await index.sync(conn)
    assert view is not None
    common = view.admitted(Filters())
    for n in range(3 * MAX_CACHED_MASKS):
        view.admitted(Filters(base_model=f"made-up-{n}"))
        assert view.admitted(Filters()) is common  # in use: kept
    assert len(view._masks) <= MAX_CACHED_MASKS
