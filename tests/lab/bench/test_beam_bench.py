"""`bench beam`: every beam answers the same queries, recall is scored against the exact truth,
and the ratios are taken against the first beam of the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference_service.search.centroid_hnsw import build_hnsw, walk_ef
from lab.bench.beam import references_dtype, run_beam_bench
from tests.helpers.cli import assert_cli_refuses


async def test_beams_are_compared_on_the_same_queries_against_the_exact_truth() -> None:
    report = await run_beam_bench([300, 600], [800, 300], n_refs=6, n_queries=12, repeats=2, seed=2)
    assert [size["loras"] for size in report["sizes"]] == [300, 600]
    for size in report["sizes"]:
        assert [(row["graph"], row["beam"]) for row in size["beams"]] == [("full", 800), ("full", 300)]
        baseline, narrow = size["beams"]
        # make_queries' mix: half single images, a quarter 2-4 images, a quarter filtered.
        assert set(baseline["by_kind"]) == {"single", "multi", "filtered"}
        for kind, row in baseline["by_kind"].items():
            assert row["p50_vs_baseline"] == 1.0
            # A beam of 800 over a few hundred centroids walks every one of them: nothing is
            # unseen, so the bound rule returns the exact top 10.
            assert row["recall_at_k"] == 1.0, kind
            assert 0 < row["p50_ms"] <= row["p95_ms"]
        for row in narrow["by_kind"].values():
            assert 0.0 <= row["recall_at_k"] <= 1.0
            assert row["p50_vs_baseline"] > 0


async def test_graphs_are_compared_beam_by_beam_against_the_first_graphs_first_beam() -> None:
    report = await run_beam_bench(
        [400], [300, 600], graphs=["pruned", "full"], n_refs=4, n_queries=8, repeats=1
    )
    (size,) = report["sizes"]
    assert report["baseline"] == {"graph": "pruned", "beam": 300}
    assert set(size["graph_build_s"]) == {"pruned", "full"}
    rows = [(row["graph"], row["beam"]) for row in size["beams"]]
    assert rows == [("pruned", 300), ("pruned", 600), ("full", 300), ("full", 600)]
    assert all(kind["p50_vs_baseline"] == 1.0 for kind in size["beams"][0]["by_kind"].values())


async def test_each_graph_is_built_with_its_level0_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bool] = []

    def recorded(centroids: np.ndarray, *, half: bool = True, full_level0: bool = True) -> Any:
        built.append(full_level0)
        return build_hnsw(centroids, half=half, full_level0=full_level0)

    monkeypatch.setattr("lab.bench.search_peers.build_hnsw", recorded)
    await run_beam_bench([200], [400], graphs=["full", "pruned"], n_refs=4, n_queries=4, repeats=1)
    assert built == [True, False]


async def test_each_beam_is_the_walks_efsearch(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def recorded(ef_search: int, limit: int) -> int:
        asked.append(ef_search)
        return walk_ef(ef_search, limit)

    monkeypatch.setattr("lab.bench.search_peers.walk_ef", recorded)
    await run_beam_bench([300], [700, 350], n_refs=4, n_queries=8, repeats=1, seed=1)
    # warm-up and the baseline walk with the default and the first beam, then the second beam
    assert set(asked) == {800, 700, 350}
    assert asked[-1] == 350


def test_references_are_held_in_half_precision_only_when_float32_would_not_fit() -> None:
    gib = 2**30
    # 1M LoRAs x 30 x 128: 15.4 GB as float32, 7.7 as float16
    assert references_dtype(100_000, 30, 128, memory_bytes=24 * gib) == np.float32
    assert references_dtype(1_000_000, 30, 128, memory_bytes=24 * gib) == np.float16
    with pytest.raises(ValueError, match="even as float16"):
        references_dtype(10_000_000, 30, 128, memory_bytes=24 * gib)


async def test_repeated_beams_and_sizes_beyond_memory_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        await run_beam_bench([100], [400, 400])
    with pytest.raises(ValueError, match="even as float16"):
        await run_beam_bench([100, 10**9], [800])
    with pytest.raises(ValueError, match="graphs"):
        await run_beam_bench([100], [800], graphs=["full", "dense"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--beams", "800,800"], "--beams"),
        (["--loras", "5"], "--loras"),
        (["--beams", "x"], "integers"),
        (["--graphs", "full,full"], "--graphs"),
        (["--graphs", "sparse"], "full, pruned"),
        (["--loras", "1000,1000000000"], "even as float16"),  # refused before anything is generated
    ],
)
def test_cli_refuses_bad_sizes_and_beams(option: list[str], message: str) -> None:
    assert_cli_refuses(["bench", "beam", *option], message)


def test_cli_writes_the_run_with_its_context(tmp_path: Path) -> None:
    out = tmp_path / "beam.json"
    small = ["--loras", "200", "--beams", "600,300", "--refs", "4", "--queries", "8", "--repeats", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "findlora", "bench", "beam", *small, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["baseline"] == {"graph": "full", "beam": 600}
    assert report["run"]["cpu_count"]
    assert "load_average" in report["run"]
