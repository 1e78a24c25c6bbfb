from __future__ import annotations

import numpy as np
import pytest

from lab.metrics import (
    best_f1,
    bootstrap_interval,
    pair_capacity,
    ranking_metrics,
    ranks_of_truth,
    roc_auc,
    sample_pairs,
)


def test_ranks_count_strictly_closer_candidates() -> None:
    distances = np.array(
        [
            [0.1, 0.5, 0.9],  # truth 0 is closest -> rank 1
            [0.2, 0.3, 0.1],  # truth 1: two are closer -> rank 3
            [0.4, 0.4, 0.9],  # truth 1 ties with 0 -> rank 1.5 (a tie is a coin flip)
            [0.5, 0.5, 0.5],  # all tied: 1 + 2 halves -> the middle, 2
        ]
    )
    assert ranks_of_truth(distances, np.array([0, 1, 1, 2])).tolist() == [1, 3, 1.5, 2]


def test_style_intervals_are_wider_than_query_intervals_when_a_styles_queries_move_together() -> None:
    """Ten styles, ten queries each, all right or all wrong per style: 100 queries are really
    ten observations, and resampling queries pretends otherwise."""
    styles = np.repeat(np.arange(10), 10)
    hits = np.repeat(np.array([1.0, 0.0] * 5), 10)
    by_query = bootstrap_interval(hits)
    by_style = bootstrap_interval(hits, clusters=styles)
    assert by_style[1] - by_style[0] > 2 * (by_query[1] - by_query[0])
    # One query per style: the same resampling either way.
    assert bootstrap_interval(hits[::10], clusters=styles[::10]) == bootstrap_interval(hits[::10])


def test_ranking_metrics_by_hand() -> None:
    ranks = np.array([1, 2, 4, 10, 20])
    m = ranking_metrics(ranks)
    assert m.mrr == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10 + 1 / 20) / 5)  # 0.38
    assert m.hit1 == m.top1 == pytest.approx(0.2)
    assert m.top2 == pytest.approx(0.4)
    assert m.top3 == pytest.approx(0.4)
    assert m.top4 == pytest.approx(0.6)
    assert m.hit5 == pytest.approx(0.6)
    assert m.hit10 == pytest.approx(0.8)
    assert m.avg_rank == pytest.approx(7.4)
    with pytest.raises(ValueError, match="1-based"):
        ranking_metrics(np.array([0, 1]))


def test_best_f1_by_hand() -> None:
    # Sorted: 0.1(+) 0.2(+) 0.3(-) 0.4(+) 0.5(-) 0.6(-).
    # t=0.2: P=1, R=2/3, F1=0.8; t=0.4: P=3/4, R=1, F1=6/7=0.857 (best); t=0.6: F1=2*0.5/1.5=0.667.
    result = best_f1(np.array([0.1, 0.2, 0.4]), np.array([0.3, 0.5, 0.6]))
    assert result.f1 == pytest.approx(100 * 6 / 7)
    assert result.threshold == pytest.approx(0.4)
    assert result.precision == pytest.approx(0.75)
    assert result.recall == pytest.approx(1.0)
    # AUC: positive 0.1 and 0.2 beat all 3 negatives, 0.4 beats 2 -> 8/9.
    assert result.auc == pytest.approx(8 / 9)


def test_best_f1_never_splits_tied_distances() -> None:
    # All distances equal: the only threshold predicts everything positive: P=0.5, R=1, F1=2/3.
    result = best_f1(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert result.f1 == pytest.approx(100 * 2 / 3)
    assert roc_auc(np.array([1.0]), np.array([1.0])) == pytest.approx(0.5)


def test_sample_pairs_follow_the_paper() -> None:
    labels = np.repeat(np.arange(4), 5)  # 4 LoRAs x 5 contents
    contents = np.tile(np.arange(5), 4)
    pos, neg = sample_pairs(labels, contents, 30, 25, np.random.default_rng(0))
    assert len(pos) == 30
    assert len(neg) == 25
    assert (labels[pos[:, 0]] == labels[pos[:, 1]]).all()
    assert (contents[pos[:, 0]] != contents[pos[:, 1]]).all()
    assert (labels[neg[:, 0]] != labels[neg[:, 1]]).all()
    assert (contents[neg[:, 0]] == contents[neg[:, 1]]).all()
    assert len({tuple(p) for p in pos.tolist()}) == 30
    with pytest.raises(ValueError, match="only"):
        sample_pairs(labels, contents, 41, 10, np.random.default_rng(0))  # 4 * C(5,2) = 40 exist


def test_pair_capacity_counts_what_sample_pairs_can_draw() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    contents = np.array([0, 1, 2, 0, 1, 0])
    # Positives: C(3,2) + C(2,2) = 4. Negatives (same content, two labels): content 0 has three
    # labels (3 pairs), content 1 two (1 pair).
    assert pair_capacity(labels, contents) == (4, 4)
    pos, neg = sample_pairs(labels, contents, 4, 4, np.random.default_rng(0))
    assert len(pos) == 4
    assert len(neg) == 4
