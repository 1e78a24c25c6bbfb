"""Bootstrap intervals of the ranking metrics and F1 at a threshold fixed beforehand."""

from __future__ import annotations

import numpy as np
import pytest

from lab.metrics import best_f1, bootstrap_interval, f1_at_threshold, paired_deltas, ranking_metrics


def test_interval_contains_the_estimate_and_is_deterministic() -> None:
    values = np.random.default_rng(3).random(40)
    low, high = bootstrap_interval(values, n_resamples=1000, seed=11)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_interval(values, n_resamples=1000, seed=11)
    assert (low, high) != bootstrap_interval(values, n_resamples=1000, seed=12)


def test_interval_narrows_with_more_queries() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        hits = rng.random(n) < 0.7
        low, high = bootstrap_interval(hits, n_resamples=1000, seed=0)
        assert low <= hits.mean() <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[0] > 5 * widths[2]  # about 1/sqrt(n): 10x narrower for 100x the queries


def test_interval_of_constant_values_is_a_point_and_rejects_bad_arguments() -> None:
    assert bootstrap_interval(np.ones(7)) == (1.0, 1.0)
    assert bootstrap_interval(np.array([])) == (0.0, 0.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_interval(np.ones(3), n_resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(np.ones(3), level=1.0)


def test_ranking_metrics_carry_mrr_and_hit5_intervals() -> None:
    ranks = np.array([1, 2, 7, 1, 30, 3, 1, 6, 1, 2])
    metrics = ranking_metrics(ranks, n_resamples=500, seed=1)
    assert metrics.mrr_ci[0] <= metrics.mrr <= metrics.mrr_ci[1]
    assert metrics.hit5_ci[0] <= metrics.hit5 <= metrics.hit5_ci[1]
    assert metrics.mrr_ci[1] - metrics.mrr_ci[0] > 0
    as_json = metrics.as_dict()
    assert as_json["mrr_ci"] == list(metrics.mrr_ci)
    assert as_json["hit5_ci"] == list(metrics.hit5_ci)


def test_f1_at_a_fixed_threshold_by_hand() -> None:
    positive = np.array([0.1, 0.2, 0.6])
    negative = np.array([0.3, 0.5, 0.9])
    fixed = f1_at_threshold(positive, negative, 0.35)  # 2 of 3 positives, 1 negative called same
    assert fixed.precision == pytest.approx(2 / 3)
    assert fixed.recall == pytest.approx(2 / 3)
    assert fixed.f1 == pytest.approx(100 * 2 / 3)
    best = best_f1(positive, negative)
    assert fixed.f1 <= best.f1
    assert f1_at_threshold(positive, negative, best.threshold).f1 == pytest.approx(best.f1)
    assert f1_at_threshold(positive, negative, 0.0).f1 == 0.0  # nothing called "same"


def test_paired_deltas_are_per_query_differences_of_two_rankings() -> None:
    before = np.array([1, 2, 4, 10])
    after = np.array([1, 1, 2, 10])
    deltas = paired_deltas(before, after, n_resamples=200)
    assert deltas["delta_mrr"] == pytest.approx((0 + 0.5 + 0.25 + 0) / 4)
    assert deltas["delta_hit5"] == 0.0  # ranks 4 -> 2 stay inside the top 5
    low, high = deltas["delta_mrr_ci"]
    assert 0.0 <= low <= deltas["delta_mrr"] <= high <= 0.5
    assert deltas["delta_hit5_ci"] == [0.0, 0.0]
