"""`bench quality` on tiny zoos: per-aggregation F1 with validation thresholds, several queries
per LoRA, the seed ledger, the CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inference_service.models.style_encoder import (
    EncoderConfig,
    resolve_encoder,
    save_encoder,
    untrained_encoder,
)
from inference_service.training.adapt import AdaptConfig
from lab.bench.adapt_rows import adapted_rows_hook
from lab.bench.features import ColourHistogram
from lab.bench.pairs import image_to_lora_distances, pair_distances, verification_metrics
from lab.bench.quality import ensure_zoo, load_eval_set, run_quality
from lab.bench.quality_context import QualityConfig, QualityContext
from lab.bench.seed_ledger import SeedReuseError, SeedUse, check_run, check_seed, read_ledger, record_seed
from lab.metrics import best_f1, f1_at_threshold
from lab.zoo.style_zoo import read_zoo_info

EVAL_SEED = 9_104_733  # a tiny zoo's seed, far from any seed a full-size benchmark would use
VAL_SEED = 9_104_734


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> QualityConfig:
    root = tmp_path_factory.mktemp("quality")
    return QualityConfig(
        cache_dir=root,
        n_styles=5,
        n_samples=5,
        n_queries=12,
        zoo_seed=EVAL_SEED,
        val_seed=VAL_SEED,
        image_size=64,
        seed_ledger=root / "ledger.json",
        bootstrap_resamples=300,
    )


def _contexts(config: QualityConfig) -> tuple[QualityContext, QualityContext]:
    encoder, label = resolve_encoder(None)
    data = load_eval_set(ensure_zoo(config, False), config.cleansing_threshold)
    val = load_eval_set(ensure_zoo(config, False, seed=config.val_seed), config.cleansing_threshold)
    validation = QualityContext(config, val, encoder, label, False)
    return QualityContext(config, data, encoder, label, False, validation=validation), validation


def test_several_queries_per_lora_in_rounds(config: QualityConfig) -> None:
    data = load_eval_set(ensure_zoo(config, False), config.cleansing_threshold)
    assert len(data.queries) == 12
    per_lora = np.bincount(data.truth, minlength=len(data.slugs))
    assert per_lora.max() - per_lora.min() <= 1
    assert per_lora.min() == 2
    samples = read_zoo_info(data.root)["samples"]
    assert not {q.source for q in data.queries} & set(samples.values())  # type: ignore[attr-defined]
    assert "-q12-" in data.root.name
    assert f"-s{EVAL_SEED}-" in data.root.name


def test_without_a_validation_zoo_the_pairs_are_split_by_anchor_image(config: QualityConfig) -> None:
    """Every positive pair of one anchor has the same distance: split pair by pair, the scoring
    half held the very values the choosing half set its threshold on (its F1 then equalled the
    eval pairs' own best)."""
    ctx, _ = _contexts(config)
    alone = QualityContext(ctx.config, ctx.data, ctx.encoder, ctx.encoder_label, False)
    colour = ColourHistogram()
    pairs = pair_distances(alone, colour, "d_avg", True)
    assert len(np.unique(pairs.positive)) < len(pairs.positive)  # why a pair split leaks
    metrics = verification_metrics(alone, colour, "d_avg", True)
    n_scored = metrics["n_positive"] + metrics["n_negative"]
    assert 0 < n_scored < len(pairs.positive) + len(pairs.negative)
    # Rebuild the split: no anchor gives pairs to both halves.
    anchors = np.unique(np.concatenate([pairs.positive_anchor, pairs.negative_anchor]))
    choosing = np.random.default_rng([config.pair_seed, 1]).permutation(anchors)[: len(anchors) // 2]
    scored = np.setdiff1d(anchors, choosing)
    assert not np.intersect1d(choosing, scored).size
    assert metrics["n_positive"] == int(np.isin(pairs.positive_anchor, scored).sum())


def test_leave_one_out_distance_to_own_lora_by_hand() -> None:
    vectors = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [10.0, 0.0]])
    labels = np.array([0, 0, 0, 1])
    d_avg = image_to_lora_distances(vectors, labels, "d_avg")
    assert d_avg[0, 0] == pytest.approx((2.0 + 4.0) / 2)  # without itself
    assert d_avg[1, 0] == pytest.approx((2.0 + np.hypot(2.0, 4.0)) / 2)
    assert d_avg[0, 1] == pytest.approx(10.0)
    centroid = image_to_lora_distances(vectors, labels, "centroid")
    assert centroid[0, 0] == pytest.approx(np.hypot(1.0, 2.0))  # centroid of the other two: (1, 2)
    assert np.isinf(centroid[3, 1])  # a LoRA of one image has nothing left to compare with


def test_f1_threshold_comes_from_validation_pairs_per_aggregation(config: QualityConfig) -> None:
    ctx, validation = _contexts(config)
    colour = ColourHistogram()
    by_aggregation = {}
    for aggregation in ("d_avg", "d_rms", "centroid"):
        pairs = pair_distances(ctx, colour, aggregation, True)
        positive, negative = pairs.positive, pairs.negative
        val = pair_distances(validation, colour, aggregation, True)
        chosen = best_f1(val.positive, val.negative).threshold
        metrics = verification_metrics(ctx, colour, aggregation, True)
        assert metrics["threshold"] == chosen
        assert metrics["f1"] == pytest.approx(f1_at_threshold(positive, negative, chosen).f1)
        assert metrics["f1"] <= metrics["f1_eval_optimal"] == pytest.approx(best_f1(positive, negative).f1)
        by_aggregation[aggregation] = (positive, chosen, best_f1(positive, negative).threshold)
    # Each aggregation has its own pair distances, and here the validation threshold is not the
    # one the eval pairs would have chosen for themselves.
    assert not np.allclose(by_aggregation["d_avg"][0], by_aggregation["centroid"][0])
    assert any(chosen != eval_best for _, chosen, eval_best in by_aggregation.values())


def test_run_reports_intervals_thresholds_and_refuses_a_scored_seed(config: QualityConfig) -> None:
    result = run_quality(replace(config, record_seed=True), progress=False)
    assert result["zoo"]["queries"] == 12
    assert result["pairs"]["threshold_from"].startswith(f"validation zoo (eval split, seed {VAL_SEED})")
    rows = {row["method"]: row for row in result["rows"]}
    for row in rows.values():
        ranking = row["ranking"]
        assert ranking["mrr_ci"][0] <= ranking["mrr"] <= ranking["mrr_ci"][1]
        assert ranking["hit5_ci"][0] <= ranking["hit5"] <= ranking["hit5_ci"][1]
    fingerprint = result["encoder"]["fingerprint"]
    assert read_ledger(config.seed_ledger) == [
        SeedUse(
            "procedural",
            EVAL_SEED,
            "eval",
            fingerprint,
            result["encoder"]["label"],
            read_ledger(config.seed_ledger)[0].date,
            "bench quality --record-seed",
        )
    ]
    # The same encoder may look again; another one may not, unless it says so.
    assert check_seed(read_ledger(config.seed_ledger), "procedural", EVAL_SEED, fingerprint) == "eval"
    other = SeedUse("procedural", VAL_SEED + 1, "eval", "000000000000", "old", "", "")
    record_seed(config.seed_ledger, other)
    record_seed(config.seed_ledger, other)  # recorded once
    assert len(read_ledger(config.seed_ledger)) == 2
    moved = replace(config, zoo_seed=VAL_SEED + 1, n_styles=3, n_samples=3, n_queries=3)
    with pytest.raises(SeedReuseError, match="--reuse-seed"):
        run_quality(moved, progress=False)
    assert not list(config.cache_dir.glob(f"*-s{VAL_SEED + 1}-*"))  # refused before generating
    with pytest.raises(SeedReuseError, match="choose another --val-seed or --val-zoo"):
        run_quality(replace(config, zoo_seed=EVAL_SEED + 5, val_seed=VAL_SEED + 1), progress=False)
    reused = run_quality(replace(moved, reuse_seed=True, val_zoo_pairs=False), progress=False)
    assert reused["seeds"][0]["ledger_role"] == "eval"
    assert reused["pairs"]["threshold_from"].startswith("held-out half of the eval pairs (asked")


def test_the_validation_zoo_cannot_be_one_of_the_runs_eval_zoos() -> None:
    """`--zoo X --val-zoo X` on a seed the ledger does not hold yet passed, and its thresholds,
    said to come from a validation zoo, came from the eval pairs."""
    with pytest.raises(SeedReuseError, match="one of this run's eval zoos"):
        check_run([], [("procedural", "eval", 1234)], ("procedural", "eval", 1234), "aaaa", False)
    checked = check_run([], [("procedural", "eval", 1234)], ("procedural", "eval", 1235), "aaaa", False)
    assert [c.seed for c in checked] == [1234]


def test_validation_seeds_are_listed_but_not_refused() -> None:
    ledger = [SeedUse("procedural", 7, "validation", "aaaa", "v4", "", "")]
    assert check_seed(ledger, "procedural", 7, "bbbb") == "validation"
    assert check_seed(ledger, "procedural", 8, "bbbb") is None
    assert check_seed(ledger, "real", 7, "bbbb") is None


def test_the_project_ledger_lists_the_seeds_looked_at() -> None:
    ledger = read_ledger()
    eval_zero = {e.label for e in ledger if (e.zoo, e.seed, e.role) == ("procedural", 0, "eval")}
    assert {"v2", "v3", "v4", "v5"} <= eval_zero
    assert any((e.zoo, e.seed, e.role) == ("procedural", 7, "validation") for e in ledger)
    with pytest.raises(SeedReuseError):
        check_seed(ledger, "procedural", 0, "a-new-encoder")


def test_cli_refuses_a_scored_seed_and_a_directory_that_is_not_a_zoo(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "findlora",
                "bench",
                "quality",
                "--no-gmi",
                "--no-multi-image",
                "--no-service",
                "--cache-dir",
                str(tmp_path),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    untrained = tmp_path / "untrained.safetensors"
    save_encoder(untrained_encoder(EncoderConfig()), untrained, {})
    refused = run("--encoder", str(untrained), "--zoo-seed", "0")
    assert refused.returncode == 2
    assert "eval seed 0 of the procedural zoo was already scored" in " ".join(refused.stderr.split())
    assert not list(tmp_path.glob("zoo-eval-*"))
    not_a_zoo = run("--zoo", str(tmp_path))
    assert not_a_zoo.returncode == 1
    assert "is not a zoo: no zoo.json" in " ".join(not_a_zoo.stderr.split())  # rich wraps lines


def test_adapted_rows_sit_beside_each_zoos_d_avg_row(tmp_path: Path) -> None:
    """Every d_avg zoo row (here the eval zoo and a second zoo given as the real-art zoo) is scored
    again after adapting the encoder to that zoo's own catalog."""
    config = QualityConfig(
        cache_dir=tmp_path,
        n_styles=5,
        n_samples=5,
        n_queries=6,
        zoo_seed=EVAL_SEED + 20,
        val_zoo_pairs=False,
        image_size=64,
        seed_ledger=tmp_path / "ledger.json",
        bootstrap_resamples=200,
    )
    second = ensure_zoo(config, False, seed=EVAL_SEED + 21)
    hook = adapted_rows_hook(AdaptConfig(max_steps=4), progress=False)
    result = run_quality(replace(config, real_zoo=second), progress=False, zoo_row_hooks=[hook])
    methods = [row["method"] for row in result["rows"]]
    for original in ("Triplet d_avg", "real-art: triplet d_avg"):
        position = methods.index(original)
        assert methods[position + 1] == f"{original} (adapted)"
        before, after = result["rows"][position], result["rows"][position + 1]
        extra = after["extra"]
        assert extra["adapted_from"] == original
        assert extra["delta_mrr"] == pytest.approx(after["ranking"]["mrr"] - before["ranking"]["mrr"])
        assert extra["delta_hit5"] == pytest.approx(after["ranking"]["hit5"] - before["ranking"]["hit5"])
        adaptation = extra["adaptation"]
        assert adaptation["steps"] == 4
        assert adaptation["loras"] == 5
        assert adaptation["train_samples"] + adaptation["val_samples"] == 5
        assert adaptation["val_samples"] >= 1
        assert adaptation["kept"] == (adaptation["after"] > adaptation["before"] + 0.01)
        # F1/AUC of the adapted row come only from pairs of held-out samples (the rest is what it
        # trained on), and the starting encoder is scored on the same pairs beside it.
        scored = after["verification"].get("n_positive", 0) + after["verification"].get("n_negative", 0)
        everything = before["verification"].get("n_positive", 0) + before["verification"].get("n_negative", 0)
        assert scored < everything
        assert set(extra["unadapted_on_held_out_pairs"]) <= {"f1", "auc"}
