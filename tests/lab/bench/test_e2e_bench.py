"""`bench e2e` on a tiny catalog: real service, real bot core, every field of the report; and the
anchored catalog it is built on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.bench.e2e import STAGES, ZooSpec, markdown_rows, run_e2e_bench
from lab.bench.synthetic import AnchoredCatalog

# Above the service's exact-scan threshold (search_exact_below, 2,000), so the centroid walk runs.
N_LORAS = 2400


def _styles(count: int, refs: int, dim: int = 32, seed: int = 3) -> list[np.ndarray]:
    """Unit-vector clusters standing in for a few styles' real reference embeddings."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.standard_normal(dim) + 0.4 * rng.standard_normal((refs, dim))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


def test_anchored_catalog_carries_the_real_references() -> None:
    anchors = _styles(4, 5)
    catalog = AnchoredCatalog(300, anchors, seed=1)
    refs = np.concatenate([chunk for _, chunk in catalog.iter_references(8, chunk=1000)])
    assert refs.shape == (300, 8, 32)
    # The same vectors whatever the chunk (the loader streams them in chunks).
    again = np.concatenate([chunk for _, chunk in catalog.iter_references(8, chunk=7)])
    np.testing.assert_array_equal(refs, again)
    np.testing.assert_allclose(np.linalg.norm(refs, axis=2), 1.0, atol=1e-5)
    for style, index in enumerate(catalog.anchor_index.tolist()):
        np.testing.assert_array_equal(refs[index], anchors[style][np.arange(8) % 5])
    assert len(set(catalog.anchor_index.tolist())) == 4
    described = catalog.describe(8)
    # Synthetic LoRAs spread like the real styles they were fitted to.
    assert described["synthetic_mean_radius"] == pytest.approx(described["real_mean_radius"], rel=0.25)
    with pytest.raises(ValueError, match="at least 2 styles"):
        AnchoredCatalog(300, anchors[:1])


@pytest.mark.db
async def test_e2e_bench_reports_latency_and_stages(db_url: str, tmp_path: Path) -> None:
    zoo = ZooSpec(styles=4, samples=6, queries_per_style=4, px=256)
    result = await run_e2e_bench(
        db_url,
        data_dir=tmp_path / "data",
        zoo_dir=tmp_path / "zoo",
        n_loras=N_LORAS,
        n_refs=6,
        n_queries=4,
        zoo_spec=zoo,
    )
    assert (result["bench"], result["n_loras"], result["reference_vectors"]) == ("e2e", N_LORAS, N_LORAS * 6)
    assert result["queries_per_kind"] == 4
    assert result["encoder"].startswith("shipped@")
    assert 1 <= result["thumbnails"]["distinct_blobs"] <= zoo.styles * zoo.samples
    assert result["query_images"]["px"] == 256
    assert result["multi"]["images"] == 4
    # The searches were timed on the service's memory index, built before the first of them.
    assert result["service"]["centroid_index"] == "memory"
    assert result["service"]["memory_index_ready_after_s"] >= 0.0
    for kind in ("single", "multi"):
        report = result[kind]
        assert report["searches"] == 4
        assert report["answer"]["p50_ms"] <= report["answer"]["p95_ms"]
        assert report["server_total"]["p50_ms"] <= report["answer"]["p95_ms"]
        assert list(report["stages"]) == [*STAGES, "other_server", "bot_and_transport"]
        for name in STAGES:
            assert report["stages"][name]["p50_ms"] >= 0.0
        # The stages, the server's unattributed rest and the bot's side make up the whole wait.
        assert sum(s["share"] for s in report["stages"].values()) == pytest.approx(1.0, abs=0.01)
        # Every answer is a full page whose references all carry a real thumbnail.
        assert report["results_median"] == result["top_k"]
        assert report["thumbnails_median"] == result["top_k"] * result["service"]["transfers_per_match"]
        assert report["candidates"]["median"] >= report["scored"]["median"] >= result["top_k"]
        # The catalog lives where the encoder's embeddings do: a query's own style's real LoRA
        # is on its page of 5 (by chance: 5 in 2,400), and the walk prunes even though the
        # service ranks a stored top 100.
        assert report["own_style"]["on_page"] >= 0.5
        assert report["scored"]["median"] < N_LORAS / 3
    catalog = result["catalog"]
    assert (catalog["kind"], catalog["real_loras"], len(catalog["styles"])) == ("anchored", 4, 4)
    assert "real reference embeddings" in result["note"]
    assert result["server"]["pgvector"]
    assert result["server"]["shared_buffers"]
    # The docs' table rows: one per kind, every column filled.
    rows = markdown_rows(result)
    assert [row.count("|") for row in rows] == [15, 15]
    assert rows[1].startswith("| 2,400 | 4 images | ")
