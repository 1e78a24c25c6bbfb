"""Retrieval and verification metrics of the style-distance paper (pure numpy); the protocol
that uses them is in docs/benchmarks.md.

rank = 1 + the candidates strictly closer than the right answer + half the others at exactly its
distance (a tie is a coin flip: counting it for the query would flatter a method that gives many
candidates one distance). Intervals resample styles, not queries: one style's queries share its
references and rise or fall together, so resampling them one by one made the intervals too narrow.
F1 thresholds are chosen on validation pairs, then applied to the eval pairs (`f1_at_threshold`):
the eval pairs' own F1-optimal threshold is an optimistic, looked-at number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


def ranks_of_truth(distances: NDArray[np.floating], truth: NDArray[np.integer]) -> NDArray[np.float64]:
    """distances (Q, M), truth (Q,) column index of the right answer -> 1-based ranks (Q,), a tie
    with another candidate counted half."""
    distances = np.asarray(distances, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    true_distance = distances[np.arange(len(truth)), truth][:, None]
    closer = (distances < true_distance).sum(axis=1)
    ties = (distances == true_distance).sum(axis=1) - 1  # the right answer itself is not a tie
    return np.asarray(1.0 + closer + 0.5 * ties, dtype=np.float64)


def mean_reciprocal_rank(ranks: NDArray[np.number]) -> float:
    return float(np.mean(1.0 / np.asarray(ranks, dtype=np.float64))) if len(ranks) else 0.0


def hit_at(ranks: NDArray[np.number], k: int) -> float:
    """Share of queries whose right answer is in the top k (= top-k accuracy)."""
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else 0.0


@dataclass(frozen=True)
class RankingMetrics:
    mrr: float
    hit1: float
    hit5: float
    hit10: float
    top1: float
    top2: float
    top3: float
    top4: float
    avg_rank: float
    n_queries: int
    mrr_ci: tuple[float, float]  # 95 % bootstrap interval (over styles where the caller gave them)
    hit5_ci: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_interval(
    values: NDArray[np.floating] | NDArray[np.integer] | NDArray[np.bool_],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
    clusters: NDArray[np.integer] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query `values`, `n_resamples` times from a
    seeded generator: queries resampled with replacement, or with `clusters` (each query's style)
    whole clusters, each resample's mean taken over the queries of the clusters it drew."""
    data = np.asarray(values, dtype=np.float64)
    if not data.size:
        return (0.0, 0.0)
    if n_resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError("need n_resamples >= 1 and 0 < level < 1")
    rng = np.random.default_rng(seed)
    if clusters is None:
        picks = rng.integers(0, data.size, size=(n_resamples, data.size))
        means = data[picks].mean(axis=1)
    else:
        _, index = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(index, weights=data)
        counts = np.bincount(index).astype(np.float64)
        drawn = rng.integers(0, len(sums), size=(n_resamples, len(sums)))
        means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


def paired_deltas(
    before: NDArray[np.number],
    after: NDArray[np.number],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    clusters: NDArray[np.integer] | None = None,
) -> dict[str, Any]:
    """MRR and hit@5 change from `before` to `after` ranks of the same queries, each with the
    bootstrap interval of its per-query differences (the paired comparison of two rows), by
    style when `clusters` gives each query's."""
    reciprocal_gain = 1.0 / np.asarray(after, dtype=np.float64) - 1.0 / np.asarray(before, dtype=np.float64)
    hit5_gain = (np.asarray(after) <= 5).astype(np.float64) - (np.asarray(before) <= 5)
    return {
        "delta_mrr": float(reciprocal_gain.mean()),
        "delta_mrr_ci": list(bootstrap_interval(reciprocal_gain, n_resamples, clusters=clusters)),
        "delta_hit5": float(hit5_gain.mean()),
        "delta_hit5_ci": list(bootstrap_interval(hit5_gain, n_resamples, clusters=clusters)),
    }


def ranking_metrics(
    ranks: NDArray[np.number],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    clusters: NDArray[np.integer] | None = None,
) -> RankingMetrics:
    """`clusters`: each query's style, for intervals that resample styles (module docstring)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size and ranks.min() < 1:
        raise ValueError("ranks are 1-based")
    return RankingMetrics(
        mrr=mean_reciprocal_rank(ranks),
        hit1=hit_at(ranks, 1),
        hit5=hit_at(ranks, 5),
        hit10=hit_at(ranks, 10),
        top1=hit_at(ranks, 1),
        top2=hit_at(ranks, 2),
        top3=hit_at(ranks, 3),
        top4=hit_at(ranks, 4),
        avg_rank=float(ranks.mean()) if ranks.size else 0.0,
        n_queries=int(ranks.size),
        mrr_ci=bootstrap_interval(1.0 / np.maximum(ranks, 1), n_resamples, seed, clusters=clusters),
        hit5_ci=bootstrap_interval(ranks <= 5, n_resamples, seed, clusters=clusters),
    )


@dataclass(frozen=True)
class VerificationMetrics:
    f1: float  # in percent, as the paper reports it
    precision: float
    recall: float
    threshold: float
    auc: float
    n_positive: int
    n_negative: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _pair_distances(
    positive: NDArray[np.floating], negative: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if not len(pos) or not len(neg):
        raise ValueError("need positive and negative pairs")
    return pos, neg


def f1_at_threshold(
    positive: NDArray[np.floating], negative: NDArray[np.floating], threshold: float
) -> VerificationMetrics:
    """F1 (percent), precision and recall of "same style when distance <= threshold", with a
    threshold fixed beforehand (chosen on other pairs); AUC does not depend on it."""
    pos, neg = _pair_distances(positive, negative)
    true_pos = int((pos <= threshold).sum())
    predicted = true_pos + int((neg <= threshold).sum())
    precision = true_pos / predicted if predicted else 0.0
    recall = true_pos / len(pos)
    f1 = 2 * precision * recall / (precision + recall) if true_pos else 0.0
    return VerificationMetrics(
        f1=float(f1 * 100),
        precision=float(precision),
        recall=float(recall),
        threshold=float(threshold),
        auc=roc_auc(pos, neg),
        n_positive=len(pos),
        n_negative=len(neg),
    )


def roc_auc(positive: NDArray[np.floating], negative: NDArray[np.floating]) -> float:
    """Probability that a random positive pair is closer than a random negative one (ties: half)."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.sort(np.asarray(negative, dtype=np.float64))
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly closer than each positive
    equal = np.searchsorted(neg, pos, side="right") - below
    wins = len(neg) - below - equal
    return float((wins + 0.5 * equal).sum() / (len(pos) * len(neg)))


def best_f1(positive: NDArray[np.floating], negative: NDArray[np.floating]) -> VerificationMetrics:
    """F1 at the F1-optimal threshold: predict "same style" when distance <= threshold."""
    pos, neg = _pair_distances(positive, negative)
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(scores, kind="stable")
    scores, labels = scores[order], labels[order]
    true_pos = np.cumsum(labels)
    predicted = np.arange(1, len(scores) + 1, dtype=np.float64)
    # Only the last index of a run of equal distances is a valid threshold.
    last = np.r_[scores[1:] != scores[:-1], True]
    precision = true_pos / predicted
    recall = true_pos / len(pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(true_pos > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(last, f1, -1.0)
    return f1_at_threshold(pos, neg, float(scores[int(np.argmax(f1))]))


def pair_capacity(labels: NDArray[np.integer], contents: NDArray[np.integer]) -> tuple[int, int]:
    """How many distinct positive and negative pairs (as `sample_pairs` draws them) exist."""
    positive, negative = _pair_masks(labels, contents)
    return int(positive.sum()), int(negative.sum())


def _pair_masks(
    labels: NDArray[np.integer], contents: NDArray[np.integer]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(i, j), i < j: same LoRA on different content (positive); same content, other LoRA (negative)."""
    labels = np.asarray(labels, dtype=np.int64)
    contents = np.asarray(contents, dtype=np.int64)
    same_label = labels[:, None] == labels[None, :]
    same_content = contents[:, None] == contents[None, :]
    upper = np.triu(np.ones_like(same_label, dtype=bool), k=1)
    return same_label & ~same_content & upper, ~same_label & same_content & upper


def sample_pairs(
    labels: NDArray[np.integer],
    contents: NDArray[np.integer],
    n_positive: int,
    n_negative: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Index pairs over a set of images, as the paper draws them.

    Positive: two different content images restyled by the same LoRA. Negative: the *same*
    content image restyled by two different LoRAs (the hard case). Returns (P, 2) and (N, 2),
    distinct pairs, sampled without replacement from all such pairs.
    """
    positives, negatives = (np.argwhere(mask) for mask in _pair_masks(labels, contents))
    if len(positives) < n_positive or len(negatives) < n_negative:
        raise ValueError(
            f"asked for {n_positive}/{n_negative} pairs, only {len(positives)}/{len(negatives)} exist"
        )
    pos = positives[rng.choice(len(positives), size=n_positive, replace=False)]
    neg = negatives[rng.choice(len(negatives), size=n_negative, replace=False)]
    return pos.astype(np.int64), neg.astype(np.int64)
