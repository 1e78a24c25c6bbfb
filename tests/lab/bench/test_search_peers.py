"""`bench search` against its peers: the streamed exact truth equals the SQL exhaustive ranking,
the peers and the storage layouts answer, and `--peers auto` says what it skipped and why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from db import ranking
from db.database import Database
from db.filters import Filters
from db.scratch import scratch_database
from inference_service.search.centroids import TwoStageOptions
from lab.bench.load import draw_metadata, load_catalog
from lab.bench.search_bench import run_search_bench, timing_order
from lab.bench.search_peers import (
    ExactTruth,
    FaissCentroids,
    FilterMasks,
    NumpyExhaustive,
    Query,
    ReferenceStore,
    make_queries,
    plan_peers,
    stream_truth,
)
from lab.bench.synthetic import SyntheticCatalog
from tests.helpers.cli import assert_cli_refuses

N_LORAS, N_REFS = 300, 8


def _catalog() -> tuple[SyntheticCatalog, FilterMasks, list[Query]]:
    catalog = SyntheticCatalog(N_LORAS, seed=2)
    meta = draw_metadata(N_LORAS, seed=2)
    queries = make_queries(catalog, meta.base_model, meta.active, 12, seed=3)
    # A filter the synthetic queries never use: the NSFW-only exclusion without a base model.
    queries.append(Query(queries[0].embeddings, Filters(), "filtered"))
    return catalog, FilterMasks(meta), queries


def test_references_stream_identically_on_every_pass() -> None:
    catalog = SyntheticCatalog(50, seed=1)
    first = np.concatenate([refs for _, refs in catalog.iter_references(4, chunk=16)])
    second = np.concatenate([refs for _, refs in catalog.iter_references(4, chunk=7)])
    assert first.shape == (50, 4, 128)
    assert np.array_equal(first, second)


def test_streamed_truth_and_numpy_peer_equal_brute_force() -> None:
    catalog, masks, queries = _catalog()
    refs = np.concatenate([r for _, r in catalog.iter_references(N_REFS, chunk=64)])
    truth, _ = stream_truth(catalog, N_REFS, queries, masks, 10, None)
    peer = NumpyExhaustive(refs)
    for query, expected in zip(queries, truth, strict=True):
        q = np.stack(query.embeddings).astype(np.float64)
        d = np.linalg.norm(refs.astype(np.float64)[:, :, None, :] - q[None, None], axis=3).mean(axis=(1, 2))
        d[~masks(query.filters)] = np.inf
        order = np.lexsort((np.arange(N_LORAS), d))[:10]
        assert [i for i, _ in expected] == order.tolist()
        assert np.allclose([v for _, v in expected], d[order], atol=1e-9)
        got = peer.rank(query, masks(query.filters), 10)
        assert [i for i, _ in got] == order.tolist()
        assert np.allclose([v for _, v in got], d[order], atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
async def test_faiss_peer_reranks_to_the_truth(dtype: str) -> None:
    catalog, masks, queries = _catalog()
    store = ReferenceStore.empty(N_LORAS, N_REFS, 128, np.dtype(dtype))
    truth, _ = stream_truth(catalog, N_REFS, queries, masks, 10, store)
    peer = FaissCentroids(store, TwoStageOptions(first_batch=16))
    assert peer.nbytes > store.refs.nbytes
    for query, expected in zip(queries, truth, strict=True):
        got, stats = await peer.rank(query, masks(query.filters), 10)
        assert [i for i, _ in got] == [i for i, _ in expected]
        tolerance = 1e-5 if dtype == "float32" else 2e-3
        assert np.allclose([d for _, d in got], [d for _, d in expected], atol=tolerance)
        assert stats.scored < N_LORAS  # the bound rule pruned: not a disguised exhaustive scan


@pytest.mark.db
@pytest.mark.parametrize("layout", ["product", "float32", "halfvec", "halfvec-centroids"])
async def test_truth_equals_sql_exhaustive(db_url: str, layout: str) -> None:
    catalog, masks, queries = _catalog()
    meta = draw_metadata(N_LORAS, seed=2)
    loaded = await load_catalog(
        db_url, catalog, N_REFS, seed=2, progress=lambda n: None, meta=meta, layout=layout
    )
    assert loaded.column_types is not None
    halfvec = loaded.column_types["reference_images.embedding"] == "halfvec(128)"
    assert halfvec == (layout != "float32")  # the product layout is halfvec references (migration 009)
    assert (loaded.column_types["lora_style_summary.centroid"] == "halfvec(128)") == (
        layout == "halfvec-centroids"
    )
    # The whole ranking, to judge near-ties at the k-th place under float16 storage.
    full = ExactTruth(queries, masks, N_LORAS)
    for start, refs in catalog.iter_references(N_REFS):
        full.add(start, refs)
    tolerance = 2e-3 if halfvec else 1e-5
    async with await Database.open(db_url, max_size=1) as db, db.connection() as conn:
        # The rebuilt centroid index serves the nearest-centroid order whatever the column type.
        await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute(
            "EXPLAIN SELECT lora_id FROM lora_style_summary ORDER BY centroid <-> %s LIMIT 5",
            (queries[0].embeddings[0],),
        )
        plan = "\n".join(str(row[0]) for row in await cur.fetchall())
        assert "Index Scan using lora_style_summary_centroid" in plan, plan
        await conn.execute("RESET enable_seqscan")
        for query, exact in zip(queries, full.best, strict=True):
            sql = await ranking.rank_exhaustive(conn, query.embeddings, query.filters, limit=10)
            got = list(zip(loaded.index_of([i for i, _ in sql]), [d for _, d in sql], strict=True))
            truth = exact[:10]
            assert np.allclose([d for _, d in got], [d for _, d in truth], atol=tolerance)
            if not halfvec:
                assert [i for i, _ in got] == [i for i, _ in truth]
                continue
            # float16 rounding may swap LoRAs whose exact d_avg lie within the tolerance.
            exact_d = dict(exact)
            for (i, d), (j, _) in zip(got, truth, strict=True):
                assert abs(exact_d[i] - d) < tolerance
                assert i == j or abs(exact_d[i] - exact_d[j]) < 2 * tolerance


@pytest.mark.db
async def test_bench_measures_peers_and_layouts_against_the_truth(server_url: str, db_url: str) -> None:
    @contextmanager
    def scratch(layout: str) -> Iterator[str]:
        with scratch_database(server_url, f"t_{layout.replace('-', '_')}") as url:
            yield url

    result = await run_search_bench(
        db_url,
        n_loras=N_LORAS,
        n_refs=N_REFS,
        n_queries=8,
        layouts=("float32", "halfvec", "halfvec-centroids"),
        scratch=scratch,
        peers="on",
        options=TwoStageOptions(exact_below=0),  # walk each layout's HNSW index, even at 300 LoRAs
    )
    paths = result["paths"]
    for name in ("numpy", "faiss_hnsw", "two_stage[float32]", "exhaustive_sql[float32]"):
        assert paths[name]["recall_at_10"] == 1.0, name
        assert set(paths[name]["by_kind"]) == {"single", "multi", "filtered"}
        assert paths[name]["memory_mb"] > 0
        assert paths[name]["build_s"] >= 0
    for layout in ("halfvec", "halfvec-centroids"):
        # float16 storage may swap near-ties with the float32 truth, no more.
        assert paths[f"two_stage[{layout}]"]["recall_at_10"] >= 0.9
        assert paths[f"exhaustive_sql[{layout}]"]["recall_at_10"] >= 0.9
    assert paths["two_stage[float32]"]["two_stage_speedup"] == 1.0
    assert result["order"] == "blocks"
    assert result["two_stage_vs_numpy"] == paths["numpy"]["two_stage_speedup"]
    assert paths["faiss_hnsw"]["references"] == "float32"
    layouts = result["layouts"]
    assert layouts["float32"]["column_types"]["reference_images.embedding"] == "vector(128)"
    assert layouts["halfvec"]["column_types"]["reference_images.embedding"] == "halfvec(128)"
    assert layouts["halfvec"]["column_types"]["lora_style_summary.centroid"] == "vector(128)"
    assert layouts["halfvec-centroids"]["column_types"]["lora_style_summary.centroid"] == "halfvec(128)"
    # Half-precision references take less room than float32 ones.
    assert (
        layouts["halfvec"]["relation_sizes_mb"]["reference_images"]
        < layouts["float32"]["relation_sizes_mb"]["reference_images"]
    )
    server = result["server"]
    for setting in ("shared_buffers", "work_mem", "effective_cache_size", "maintenance_work_mem"):
        assert server[setting]
    assert server["max_parallel_maintenance_workers"].isdigit()
    assert server["pgvector"] == "0.8.2"
    assert result["rss_mb"]["bench_process_peak"] > 0


@pytest.mark.db
async def test_peers_auto_skips_what_does_not_fit(db_url: str) -> None:
    result = await run_search_bench(
        db_url, n_loras=N_LORAS, n_refs=N_REFS, n_queries=8, peer_budget_bytes=1000, exhaustive_queries=2
    )
    for name in ("numpy", "faiss_hnsw"):
        assert result["paths"][name]["skipped"].startswith("needs ")
    assert result["peers"]["references_held"] == "none"
    assert result["two_stage_vs_numpy"] is None
    # The SQL scan timed the queries it was given; the truth still judged every two-stage answer.
    assert result["paths"]["exhaustive_sql[product]"]["queries"] == 2
    assert result["paths"]["two_stage[product]"]["queries"] == 8
    assert result["paths"]["two_stage[product]"]["recall_at_10"] == 1.0


def test_peer_plan_falls_back_to_float16_then_skips() -> None:
    needs = plan_peers("auto", 1000, 30, 128, budget_bytes=10**12).needs_bytes
    both = plan_peers("auto", 1000, 30, 128, budget_bytes=needs["numpy"] + needs["faiss_hnsw"])
    assert (both.numpy, both.faiss, both.ref_dtype) == (True, True, "float32")
    half = plan_peers("auto", 1000, 30, 128, budget_bytes=needs["faiss_hnsw_float16"])
    assert (half.numpy, half.faiss, half.ref_dtype) == (False, True, "float16")
    assert "needs" in half.skipped["numpy"]
    off = plan_peers("off", 1000, 30, 128)
    assert (off.numpy, off.faiss) == (False, False)
    with pytest.raises(ValueError, match="auto, on or off"):
        plan_peers("maybe", 10, 2, 128)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--layouts", "halfvec,bogus"], "--layouts"),
        (["--peers", "maybe"], "--peers"),
        (["--order", "random"], "--order"),
    ],
)
def test_cli_refuses_unknown_layouts_peer_modes_and_orders(option: list[str], message: str) -> None:
    assert_cli_refuses(["bench", "search", "--loras", "10", *option], message)


def test_timing_order_blocks_each_path_and_interleaves_on_request() -> None:
    paths = ["two_stage", "two_stage_pgvector", "exhaustive_sql"]
    blocks = timing_order(paths, 3, 2, "blocks")
    assert blocks == [
        ("two_stage", 0), ("two_stage", 1), ("two_stage", 2),
        ("two_stage_pgvector", 0), ("two_stage_pgvector", 1), ("two_stage_pgvector", 2),
        ("exhaustive_sql", 0), ("exhaustive_sql", 1),
    ]  # fmt: skip
    interleaved = timing_order(paths, 3, 2, "interleaved")
    assert sorted(interleaved) == sorted(blocks)  # the same work, another order
    assert interleaved[:3] == [("exhaustive_sql", 0), ("two_stage_pgvector", 0), ("two_stage", 0)]
    assert interleaved[3:6] == [("two_stage", 1), ("two_stage_pgvector", 1), ("exhaustive_sql", 1)]
    assert interleaved[6:] == [("two_stage_pgvector", 2), ("two_stage", 2)]  # past the last path's budget
    assert timing_order([], 3, 3, "blocks") == []
