"""A quality run's vectors and its verification pairs: each zoo's embeddings (cached per
featuriser), the aggregation from every image to every LoRA, and the positive / negative pairs
whose F1 and AUC `bench quality` reports (docs/benchmarks.md, "F1 per aggregation")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.scoring.style_distance import Aggregation, style_distances
from lab.bench.features import Featurizer
from lab.metrics import best_f1, f1_at_threshold, pair_capacity, sample_pairs

if TYPE_CHECKING:
    from lab.bench.quality_context import QualityContext


def zoo_vectors(
    ctx: QualityContext, featurizer: Featurizer
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(reference vectors, query vectors) of the context's zoo, cached per featuriser within the run."""
    if featurizer.name not in ctx.embeddings:
        images = ctx.data.references + ctx.data.query_images
        chunk = 256
        parts = [
            featurizer(images[i : i + chunk])
            for i in tqdm(
                range(0, len(images), chunk),
                desc=f"embed: {featurizer.name}",
                unit="chunk",
                disable=not ctx.progress,
                leave=False,
            )
        ]
        ctx.embeddings[featurizer.name] = np.concatenate(parts)
    vectors = ctx.embeddings[featurizer.name]
    n = len(ctx.data.references)
    return vectors[:n], vectors[n:]


def image_to_lora_distances(
    vectors: NDArray[np.floating], labels: NDArray[np.int64], aggregation: Aggregation
) -> NDArray[np.float64]:
    """(N, M): the aggregation from each image to each LoRA's images, its own LoRA without it."""
    n_loras = int(labels.max()) + 1 if len(labels) else 0
    per_lora = [vectors[labels == m] for m in range(n_loras)]
    out = style_distances(vectors, per_lora, aggregation)
    for m in range(n_loras):
        members = np.flatnonzero(labels == m)
        for position, i in enumerate(members):
            others = np.delete(per_lora[m], position, axis=0)
            out[i, m] = style_distances(vectors[i : i + 1], [others], aggregation)[0, 0]
    return out


@dataclass(frozen=True)
class PairDistances:
    positive: NDArray[np.float64]
    negative: NDArray[np.float64]
    positive_anchor: NDArray[np.int64]  # image i of each pair
    negative_anchor: NDArray[np.int64]


def pair_distances(
    ctx: QualityContext,
    featurizer: Featurizer,
    aggregation: Aggregation,
    cleansed: bool,
    anchors: NDArray[np.bool_] | None = None,
) -> PairDistances:
    """Distances of the zoo's positive and negative pairs (empty when it has none of a kind).

    Pair (i, j): the aggregation from image i to image j's LoRA (without i), so a negative pair
    (one content, two LoRAs) still has j's same-content image in the set it is compared with.
    Every positive pair of one anchor i has the same distance: a split of the pairs into two
    halves must go by anchor, or one half scores values the other chose its threshold on."""
    ref_vectors, _ = zoo_vectors(ctx, featurizer)
    data = ctx.data
    use = data.kept if cleansed else np.ones_like(data.kept)
    pairs_from = np.flatnonzero(use)
    labels, contents = data.labels[pairs_from], data.contents[pairs_from]
    # A zoo whose sources share few samples (the real-art zoo) has fewer pairs than asked: use all.
    n_positive, n_negative = pair_capacity(labels, contents)
    positive, negative = sample_pairs(
        labels,
        contents,
        min(ctx.config.n_positive, n_positive),
        min(ctx.config.n_negative, n_negative),
        np.random.default_rng(ctx.config.pair_seed),
    )
    to_lora = image_to_lora_distances(ref_vectors[pairs_from], labels, aggregation)

    if anchors is not None:  # only pairs from the allowed images i
        allowed = np.asarray(anchors, dtype=bool)[pairs_from]
        positive, negative = positive[allowed[positive[:, 0]]], negative[allowed[negative[:, 0]]]

    def distances(pairs: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.asarray(to_lora[pairs[:, 0], labels[pairs[:, 1]]], dtype=np.float64)

    return PairDistances(
        distances(positive),
        distances(negative),
        np.asarray(positive[:, 0], dtype=np.int64),
        np.asarray(negative[:, 0], dtype=np.int64),
    )


def verification_metrics(
    ctx: QualityContext,
    featurizer: Featurizer,
    aggregation: Aggregation,
    cleansed: bool,
    anchors: NDArray[np.bool_] | None = None,
) -> dict[str, float | int]:
    """F1 at the threshold chosen on validation pairs, applied to the eval pairs; the eval pairs'
    own best F1 beside it (`f1_eval_optimal`, optimistic). Empty without both kinds of pair."""
    pairs = pair_distances(ctx, featurizer, aggregation, cleansed, anchors)
    positive, negative = pairs.positive, pairs.negative
    if ctx.validation is not None:
        val = pair_distances(ctx.validation, featurizer, aggregation, cleansed)
        val_positive, val_negative = val.positive, val.negative
    else:  # no validation zoo: the pairs of a random half of the anchor images choose, the rest score
        anchors = np.unique(np.concatenate([pairs.positive_anchor, pairs.negative_anchor]))
        rng = np.random.default_rng([ctx.config.pair_seed, 1])
        choosing = rng.permutation(anchors)[: len(anchors) // 2]
        pos_val = np.isin(pairs.positive_anchor, choosing)
        neg_val = np.isin(pairs.negative_anchor, choosing)
        val_positive, positive = positive[pos_val], positive[~pos_val]
        val_negative, negative = negative[neg_val], negative[~neg_val]
    if not (len(positive) and len(negative) and len(val_positive) and len(val_negative)):
        return {}  # F1 shows "-"
    chosen = best_f1(val_positive, val_negative)
    return {
        **f1_at_threshold(positive, negative, chosen.threshold).as_dict(),
        "f1_eval_optimal": best_f1(positive, negative).f1,
        "f1_validation": chosen.f1,
    }
