"""`bench e2e` on a tiny catalog: real service, real bot core, every field of the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bench.e2e import STAGES, ZooSpec, markdown_rows, run_e2e_bench

pytestmark = pytest.mark.db


async def test_e2e_bench_reports_latency_and_stages(db_url: str, tmp_path: Path) -> None:
    zoo = ZooSpec(styles=2, samples=3, queries_per_style=4, px=256)
    result = await run_e2e_bench(
        db_url,
        data_dir=tmp_path / "data",
        zoo_dir=tmp_path / "zoo",
        n_loras=200,
        n_refs=6,
        n_queries=4,
        zoo_spec=zoo,
    )
    assert (result["bench"], result["n_loras"], result["reference_vectors"]) == ("e2e", 200, 1200)
    assert result["queries_per_kind"] == 4
    assert result["encoder"].startswith("shipped@")
    assert 1 <= result["thumbnails"]["distinct_blobs"] <= zoo.styles * zoo.samples
    assert result["query_images"]["px"] == 256
    assert result["multi"]["images"] == 4
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
    assert "synthetic" in result["note"]
    assert result["server"]["pgvector"]
    assert result["server"]["shared_buffers"]
    # The docs' table rows: one per kind, every column filled.
    rows = markdown_rows(result)
    assert [row.count("|") for row in rows] == [15, 15]
    assert rows[1].startswith("| 200 | 4 images | ")
