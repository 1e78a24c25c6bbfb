"""`bench crossover`: each query is ranked by the service's in-memory search twice, once walking the
graph and once scanning every centroid, and only the candidate source differs between the two."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inference_service.search.memory_view import CentroidView, ExactScan, HnswWalk
from lab.bench.crossover import crossover, run_crossover_bench
from tests.helpers.cli import assert_cli_refuses


async def test_walk_and_scan_answer_the_same_queries_against_the_exact_truth() -> None:
    report = await run_crossover_bench([300, 600], n_refs=6, n_queries=16, repeats=2, seed=3)
    assert [size["loras"] for size in report["sizes"]] == [300, 600]
    for size in report["sizes"]:
        assert set(size["by_kind"]) == {"single", "filtered"}  # several images always scan
        for kind, row in size["by_kind"].items():
            # The scan is exact, and a beam of 800 over a few hundred centroids sees every one.
            assert row["scan"]["recall_at_k"] == row["walk"]["recall_at_k"] == 1.0, kind
            assert 0 < row["walk"]["p50_ms"] <= row["walk"]["p95_ms"]
            assert row["scan_over_walk_p50"] == pytest.approx(
                row["scan"]["p50_ms"] / row["walk"]["p50_ms"], abs=1e-3
            )


async def test_only_the_candidate_source_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[tuple[int, str]] = []
    original = CentroidView.source

    def recorded(view: CentroidView, *args: Any, **kwargs: Any) -> ExactScan | HnswWalk:
        source = original(view, *args, **kwargs)
        chosen.append((view.exact_below, type(source).__name__))
        return source

    monkeypatch.setattr(CentroidView, "source", recorded)
    await run_crossover_bench([400], n_refs=4, n_queries=8, repeats=1, seed=1)
    # make_queries' single images: the forced-walk view (exact_below 1) walks, the other scans.
    assert {name for below, name in chosen if below == 1} >= {"HnswWalk"}
    assert {name for below, name in chosen if below > 1} == {"ExactScan"}
    assert sum(1 for _, name in chosen if name == "HnswWalk") >= 4


def test_the_crossover_is_interpolated_where_the_ratio_passes_one() -> None:
    assert crossover([100_000, 200_000], [0.5, 1.5]) == round(100_000 * 2**0.5)
    assert crossover([200_000, 50_000, 100_000], [1.4, 0.6, 0.9]) == 114_870  # sizes in any order
    assert crossover([100, 200], [1.2, 1.5]) is None  # the walk wins everywhere measured
    assert crossover([100, 200], [0.2, 0.5]) is None  # the scan wins everywhere measured


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--loras", "5"], "--loras"),
        (["--loras", "x"], "integers"),
        (["--loras", "300,300"], "distinct"),
        (["--loras", "1000,1000000000"], "do not fit"),  # refused before anything is generated
    ],
)
def test_cli_refuses_bad_sizes(option: list[str], message: str) -> None:
    assert_cli_refuses(["bench", "crossover", *option], message)


def test_cli_writes_the_run_with_its_context(tmp_path: Path) -> None:
    out = tmp_path / "crossover.json"
    small = ["--loras", "200", "--refs", "4", "--queries", "8", "--repeats", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "findlora", "bench", "crossover", *small, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["bench"] == "crossover"
    assert [size["loras"] for size in report["sizes"]] == [200]
    assert "load_average" in report["run"]
