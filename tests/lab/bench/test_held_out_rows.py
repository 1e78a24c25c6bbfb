"""bench quality's held-out-family rows: scored like the eval zoo, tracked in the seed ledger."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from inference_service.training.adapt import AdaptConfig
from lab.bench.adapt_rows import adapted_rows_hook
from lab.bench.held_out_rows import HeldOutFamilyRows, check_held_out_zoo
from lab.bench.quality import run_quality
from lab.bench.quality_context import QualityConfig
from lab.bench.seed_ledger import SeedReuseError, SeedUse, read_ledger, record_seed
from lab.zoo.held_out_ops import HELD_OUT_PRIMARIES
from lab.zoo.style_zoo import generate_zoo

HELD_SEED = 31


@pytest.fixture(scope="module")
def held_out_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("held") / "heldout"
    return generate_zoo(
        root,
        n_styles=5,
        n_samples=4,
        split="heldout-family",
        seed=HELD_SEED,
        progress=False,
        size=64,
        n_queries=8,
    )


def test_held_out_family_rows_are_scored_and_recorded(held_out_zoo: Path, tmp_path: Path) -> None:
    config = QualityConfig(
        cache_dir=tmp_path,
        n_styles=4,
        n_samples=4,
        n_queries=4,
        zoo_seed=515_151,
        val_zoo_pairs=False,
        image_size=64,
        held_out_zoo=held_out_zoo,
        seed_ledger=tmp_path / "ledger.json",
        bootstrap_resamples=200,
        record_seed=True,
    )
    rows_of = HeldOutFamilyRows()
    result = run_quality(config, progress=False, extra_rows=[rows_of])
    held = {row["method"]: row for row in result["rows"] if row["method"].startswith("held-out families")}
    assert set(held) == {"held-out families: triplet d_avg", "held-out families: colour histogram"}
    for row in held.values():
        ranking = row["ranking"]
        assert ranking["n_queries"] == 8
        assert ranking["mrr_ci"][0] <= ranking["mrr"] <= ranking["mrr_ci"][1]
        assert ranking["hit5_ci"][0] <= ranking["hit5"] <= ranking["hit5_ci"][1]
        assert "f1" in row["verification"]
    assert rows_of.summary is not None
    assert rows_of.summary["loras"] == 5
    assert rows_of.summary["families"] == list(HELD_OUT_PRIMARIES)
    seeds = result["seeds"]
    assert {
        "zoo": "heldout-family",
        "split": "heldout-family",
        "seed": HELD_SEED,
        "ledger_role": "unscored",
    } in seeds
    fingerprint = result["encoder"]["fingerprint"]
    recorded = [(e.zoo, e.seed, e.role, e.encoder) for e in read_ledger(config.seed_ledger)]
    assert ("heldout-family", HELD_SEED, "eval", fingerprint) in recorded
    # another encoder that scored this held-out seed makes it refused, before anything is embedded
    record_seed(
        config.seed_ledger, SeedUse("heldout-family", HELD_SEED + 1, "eval", "000000000000", "old", "")
    )
    other = generate_zoo(
        tmp_path / "other",
        n_styles=3,
        n_samples=3,
        split="heldout-family",
        seed=HELD_SEED + 1,
        progress=False,
        size=48,
        n_queries=3,
    )
    with pytest.raises(SeedReuseError, match="heldout-family zoo"):
        run_quality(
            replace(config, held_out_zoo=other, record_seed=False), progress=False, extra_rows=[rows_of]
        )


def test_only_a_heldout_family_zoo_is_accepted(tmp_path: Path) -> None:
    evaluation = generate_zoo(
        tmp_path / "eval", n_styles=3, n_samples=2, split="eval", seed=1, progress=False, size=32, n_queries=2
    )
    with pytest.raises(ValueError, match="--split heldout-family"):
        check_held_out_zoo(evaluation)
    with pytest.raises(ValueError, match=r"no zoo\.json"):
        check_held_out_zoo(tmp_path)


def test_the_held_out_zoo_gets_its_adapted_row(held_out_zoo: Path, tmp_path: Path) -> None:
    """`--adapt-minutes` adapts to every d_avg zoo, the held-out-family zoo included."""
    config = QualityConfig(
        cache_dir=tmp_path,
        n_styles=4,
        n_samples=4,
        n_queries=4,
        zoo_seed=515_152,
        val_zoo_pairs=False,
        image_size=64,
        held_out_zoo=held_out_zoo,
        seed_ledger=tmp_path / "ledger.json",
        bootstrap_resamples=200,
    )
    hook = adapted_rows_hook(AdaptConfig(max_steps=3), progress=False)
    result = run_quality(config, progress=False, extra_rows=[HeldOutFamilyRows()], zoo_row_hooks=[hook])
    methods = [row["method"] for row in result["rows"]]
    position = methods.index("held-out families: triplet d_avg")
    assert methods[position + 1] == "held-out families: triplet d_avg (adapted)"
    adaptation = result["rows"][position + 1]["extra"]["adaptation"]
    assert (adaptation["steps"], adaptation["loras"]) == (3, 5)
