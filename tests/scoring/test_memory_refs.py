"""The references the memory index holds: exact d_avg as the numpy twin and PostgreSQL compute it,
and blocks appended row by row without moving what a view already holds."""

from __future__ import annotations

import numpy as np
import pytest

from db import ranking, summaries
from db.database import Database
from db.summaries import ReferenceBlocks
from inference_service.scoring.style_distance import style_distances
from inference_service.search.memory_refs import ReferenceColumns
from lab.bench.load import load_catalog
from lab.bench.synthetic import SyntheticCatalog


def blocks(rng: np.random.Generator, ids: list[int], counts: list[int], dim: int = 16) -> ReferenceBlocks:
    embeddings = rng.standard_normal((sum(counts), dim)).astype(np.float16)
    return ReferenceBlocks(np.array(ids, np.int64), np.array(counts, np.int64), embeddings)


def test_d_avg_is_the_numpy_twins_for_one_and_several_images() -> None:
    rng = np.random.default_rng(1)
    first = blocks(rng, [7, 3, 9], [4, 1, 6])
    columns = ReferenceColumns(np.array([9, 7, 3]), first, 16)  # rows in another order than blocks
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    starts = np.cumsum(first.counts) - first.counts
    per_lora = {
        i: first.embeddings[s : s + c].astype(np.float32)
        for i, s, c in zip(first.lora_ids.tolist(), starts, first.counts, strict=True)
    }
    view = columns.view()
    for images in (queries[:1], queries):
        got = view.d_avg(np.array([2, 0]), images)  # rows of LoRAs 3 and 9
        want = style_distances(images, [per_lora[3], per_lora[9]], "d_avg").mean(axis=0)
        assert np.allclose(got, want, rtol=1e-6)


def test_appending_past_the_buffer_keeps_earlier_views_intact() -> None:
    rng = np.random.default_rng(2)
    columns = ReferenceColumns(np.array([1]), blocks(rng, [1], [3]), 16)
    before = columns.view()
    kept = before.embeddings.copy()
    query = rng.standard_normal((1, 16)).astype(np.float32)
    score = before.d_avg(np.array([0]), query)
    columns.append(np.arange(2, 2000), blocks(rng, list(range(2, 2000)), [20] * 1998))
    after = columns.view()
    assert after.embeddings.base is not before.embeddings.base  # grown: a new buffer
    assert np.array_equal(before.embeddings, kept)
    assert np.array_equal(after.d_avg(np.array([0]), query), score)
    assert after.count[-1] == 20
    assert after.offset[-1] == 3 + 20 * 1997
    with pytest.raises(ValueError, match="no kept references"):
        columns.append(np.array([5000]), blocks(rng, [1], [1]))
    with pytest.raises(ValueError, match="without references"):
        ReferenceColumns(np.array([4]), blocks(rng, [4], [0]), 16).view().d_avg(np.array([0]), query)


@pytest.mark.db
async def test_loaded_blocks_score_as_postgres_does(db: Database, db_url: str) -> None:
    catalog = SyntheticCatalog(60, seed=5)
    meta = await load_catalog(db_url, catalog, 6, seed=5, progress=lambda n: None)
    async with db.connection() as conn:
        loaded = await summaries.load_reference_blocks(conn, 128)
        assert loaded.embeddings.dtype == np.float16  # as stored: halfvec
        assert sorted(loaded.lora_ids.tolist()) == sorted(meta.lora_ids.tolist())
        queries = list(catalog.queries(np.array([0, 1]), np.random.default_rng(6)))
        want = await ranking.d_avg_of(conn, queries, meta.lora_ids.tolist())
        some = await summaries.load_reference_blocks(conn, 128, meta.lora_ids[:3])
    assert sorted(some.lora_ids.tolist()) == sorted(meta.lora_ids[:3].tolist())
    view = ReferenceColumns(meta.lora_ids, loaded, 128).view()
    assert view.embeddings.dtype == np.float32  # widened once, exactly
    got = view.d_avg(np.arange(len(meta.lora_ids)), np.stack(queries))
    assert np.allclose(got, [want[i] for i in meta.lora_ids.tolist()], rtol=2e-6, atol=1e-6)
