"""`findlora bench quality`: the style-distance quality protocol (docs/design.md 8) in one run.

Protocol (docs/benchmarks.md): an eval-split style zoo, 200 queries (two per LoRA) on held-out
content; MRR and hit@5 with a 95 % bootstrap interval over styles; each aggregation (d_avg,
d_rms, centroid) its own pair distances and F1, the threshold chosen on validation pairs (a
validation zoo, seed 7 by default, or a held-out half of the pairs). Eval seeds are checked
against the seed ledger (lab/bench/seed_ledger.py).

Each row is a featuriser + an aggregation over a LoRA's reference embeddings; more rows
(multi-image, held-out family, the service's path) plug in as `extra_rows` callables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.catalog.format import Catalog, read_catalog
from inference_service.models.style_encoder import (
    StyleEncoder,
    encoder_fingerprint,
    read_metadata,
    resolve_encoder,
    untrained_encoder,
)
from inference_service.scoring.cleansing import DEFAULT_THRESHOLD, transfer_mse
from inference_service.scoring.style_distance import Aggregation, style_distances
from lab.bench.features import ColourHistogram, EncoderFeaturizer, Featurizer, GramFeatures
from lab.bench.seed_ledger import LEDGER, ZooKind, check_run, read_ledger, record_run
from lab.metrics import (
    BOOTSTRAP_RESAMPLES,
    best_f1,
    f1_at_threshold,
    pair_capacity,
    ranking_metrics,
    ranks_of_truth,
    sample_pairs,
)
from lab.zoo.style_zoo import Query, generate_zoo, load_rgb, read_queries, read_zoo_info

PAPER = {
    "note": "Vu et al., 100 real LoRAs, VGG19 with ImageNet weights; F1 in percent",
    "rows": [
        {"method": "Proposed (20 training LoRAs)", "mrr": 0.44, "f1": 70.3},
        {"method": "Proposed+ (30 training LoRAs)", "mrr": 0.47, "f1": 72.3},
        {"method": "NoCleansing", "mrr": 0.39, "f1": 70.14},
        {"method": "NoFine-Tuning", "mrr": 0.35, "f1": 62.0},
        {"method": "FaceOnly", "mrr": 0.26, "f1": 50.88},
    ],
}


VALIDATION_SEED = 7  # the project's validation zoo seed (model selection, F1 thresholds)
# Bumped whenever generated zoo content changes for the same arguments, so cached zoos are not
# reused stale. 2: real lfw faces in every pool; more queries than LoRAs in rounds.
ZOO_FORMAT = 2


@dataclass(frozen=True)
class QualityConfig:
    zoo: Path | None = None  # an existing eval zoo; None: generate (and cache) one
    cache_dir: Path = Path(".bench")
    n_styles: int = 100
    n_samples: int = 30
    n_queries: int = 200
    zoo_seed: int = 0
    val_zoo: Path | None = None  # an existing validation zoo for the F1 thresholds
    val_seed: int = VALIDATION_SEED  # else one generated with this seed (when the eval zoo is)
    val_zoo_pairs: bool = True  # False: thresholds from a held-out half of the eval pairs
    real_zoo: Path | None = None  # a human-made-art eval zoo: adds the "real-art" rows
    held_out_zoo: Path | None = None  # a heldout-family zoo: rows from held_out_rows.py (extra_rows)
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    seed_ledger: Path = LEDGER
    reuse_seed: bool = False  # score an eval seed the ledger lists for other encoders
    record_seed: bool = False  # append this run's (zoo, seed, encoder) to the ledger
    image_size: int = 160
    n_positive: int = 10_000
    n_negative: int = 10_100
    pair_seed: int = 0
    cleansing_threshold: float = DEFAULT_THRESHOLD
    encoder: Path | None = None  # None: the shipped default (else untrained)
    no_cleansing_encoder: Path | None = None  # an encoder trained without cleansing, if any


@dataclass
class EvalSet:
    """The eval zoo loaded once: images, labels, cleansing mask and queries."""

    root: Path
    slugs: list[str]
    sample_ids: list[str]
    references: list[Image.Image]  # L*S, LoRA-major
    labels: NDArray[np.int64]
    contents: NDArray[np.int64]
    kept: NDArray[np.bool_]  # Eq. 1 says the transfer imparted a style
    queries: list[Query]
    query_images: list[Image.Image]
    truth: NDArray[np.int64]


@dataclass
class Row:
    method: str
    featurizer: str
    aggregation: str
    cleansed: bool
    ranking: dict[str, Any]  # RankingMetrics.as_dict(): numbers, mrr_ci / hit5_ci [low, high]
    verification: dict[str, float | int]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an adapted row's delta and adaptation

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QualityContext:
    config: QualityConfig
    data: EvalSet
    encoder: StyleEncoder
    encoder_label: str
    progress: bool
    embeddings: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # by featurizer name
    validation: QualityContext | None = None  # the validation zoo: F1 thresholds come from it


# Called at the end with every row and each zoo's (context, d_avg row), e.g. to add adapted rows.
ZooRowsHook = Callable[[list[Row], list[tuple[QualityContext, Row]]], None]


def ensure_zoo(config: QualityConfig, progress: bool, seed: int | None = None) -> Path:
    """The eval zoo (given, or generated and cached); with `seed`, the generated zoo of that seed."""
    if config.zoo is not None and seed is None:
        return config.zoo
    seed = config.zoo_seed if seed is None else seed
    root = config.cache_dir / (
        f"zoo-eval-v{ZOO_FORMAT}-{config.n_styles}x{config.n_samples}-q{config.n_queries}"
        f"-s{seed}-{config.image_size}px"
    )
    if not (root / "zoo.json").exists():
        generate_zoo(
            root,
            n_styles=config.n_styles,
            n_samples=config.n_samples,
            split="eval",
            seed=seed,
            progress=progress,
            size=config.image_size,
            n_queries=config.n_queries,
        )
    return root


def validation_zoo(config: QualityConfig, eval_seed: int | None, progress: bool) -> tuple[Path | None, str]:
    """Where the F1 thresholds come from: (validation zoo or None for held-out pairs, description)."""
    if config.val_zoo is not None:
        return config.val_zoo, f"validation zoo {config.val_zoo}"
    if not config.val_zoo_pairs:
        why = "asked"
    elif config.zoo is not None:
        why = "a given eval zoo has no generated validation zoo; --val-zoo gives one"
    elif eval_seed == config.val_seed:
        why = "the eval zoo is the validation seed's own zoo"
    else:
        root = ensure_zoo(config, progress, seed=config.val_seed)
        return root, f"validation zoo (eval split, seed {config.val_seed}) {root}"
    return None, f"held-out half of the eval pairs ({why}; pair seed {config.pair_seed})"


def zoo_identity(root: Path) -> tuple[ZooKind, str, int]:
    """(procedural or real, split, seed) as the zoo's zoo.json states them."""
    if not (root / "zoo.json").exists():
        raise ValueError(f"{root} is not a zoo: no zoo.json (build one with `findlora bench zoo`)")
    info = read_zoo_info(root)
    kind: ZooKind = "real" if "split_assignment" in info else "procedural"
    kind = "heldout-family" if info["split"] == "heldout-family" else kind
    return kind, str(info["split"]), int(str(info["seed"]))


def load_eval_set(root: Path, threshold: float) -> EvalSet:
    if not (root / "zoo.json").exists():
        raise ValueError(f"{root} is not a zoo: no zoo.json (build one with `findlora bench zoo`)")
    catalog: Catalog = read_catalog(root)
    slugs = sorted(catalog.loras)
    sample_ids = sorted(catalog.samples)
    originals = {sid: load_rgb(path) for sid, path in catalog.samples.items()}
    references, labels, contents, kept = [], [], [], []
    for li, slug in enumerate(slugs):
        for si, sid in enumerate(sample_ids):
            path = catalog.loras[slug].references.get(sid)
            if path is None:
                continue
            image = load_rgb(path)
            references.append(image)
            labels.append(li)
            contents.append(si)
            kept.append(transfer_mse(image, originals[sid]) >= threshold)
    queries = read_queries(root)
    if not queries:
        raise ValueError(f"{root} has no queries.json: generate an eval-split zoo")
    return EvalSet(
        root=root,
        slugs=slugs,
        sample_ids=sample_ids,
        references=references,
        labels=np.array(labels, dtype=np.int64),
        contents=np.array(contents, dtype=np.int64),
        kept=np.array(kept, dtype=bool),
        queries=queries,
        query_images=[load_rgb(q.path) for q in queries],
        truth=np.array([slugs.index(q.slug) for q in queries], dtype=np.int64),
    )


def _embed(ctx: QualityContext, featurizer: Featurizer) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(reference vectors, query vectors), cached per featuriser within the run."""
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


def evaluate_row(
    ctx: QualityContext,
    method: str,
    featurizer: Featurizer,
    aggregation: Aggregation,
    cleansed: bool,
    pair_anchors: NDArray[np.bool_] | None = None,
) -> Row:
    """`pair_anchors` (over the references): only pairs whose image i is one of them are scored
    for F1/AUC, e.g. the samples an adapted encoder never trained on."""
    started = time.monotonic()
    ref_vectors, query_vectors = _embed(ctx, featurizer)
    data = ctx.data
    use = data.kept if cleansed else np.ones_like(data.kept)
    per_lora = [ref_vectors[(data.labels == m) & use] for m in range(len(data.slugs))]
    distances = style_distances(query_vectors, per_lora, aggregation)
    ranks = ranks_of_truth(distances, data.truth)
    ranking = ranking_metrics(ranks, ctx.config.bootstrap_resamples, clusters=data.truth).as_dict()
    # Each query's rank (queries in zoo order): a later analysis of this run needs no new look.
    ranking["query_ranks"] = ranks.tolist()
    return Row(
        method,
        featurizer.name,
        aggregation,
        cleansed,
        ranking,
        verification_metrics(ctx, featurizer, aggregation, cleansed, pair_anchors),
        time.monotonic() - started,
    )


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
    ref_vectors, _ = _embed(ctx, featurizer)
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


def run_quality(
    config: QualityConfig,
    progress: bool = True,
    extra_rows: Sequence[Callable[[QualityContext], list[Row]]] = (),
    zoo_row_hooks: Sequence[ZooRowsHook] = (),
) -> dict[str, Any]:
    started = time.monotonic()
    encoder, label = resolve_encoder(config.encoder)
    fingerprint = encoder_fingerprint(encoder)
    ledger = read_ledger(config.seed_ledger)
    # Check every eval seed before any zoo is generated or any image embedded.
    targets: list[tuple[ZooKind, str, int]] = [
        ("procedural", "eval", config.zoo_seed) if config.zoo is None else zoo_identity(config.zoo)
    ]
    if config.real_zoo is not None:
        targets.append(zoo_identity(config.real_zoo))
    if config.held_out_zoo is not None:
        targets.append(zoo_identity(config.held_out_zoo))
    validation_identity: tuple[ZooKind, str, int] | None = None
    if config.val_zoo is not None:
        validation_identity = zoo_identity(config.val_zoo)
    elif config.zoo is None and config.val_zoo_pairs and config.val_seed != config.zoo_seed:
        validation_identity = ("procedural", "eval", config.val_seed)
    checked = check_run(ledger, targets, validation_identity, fingerprint, config.reuse_seed)
    root = ensure_zoo(config, progress)
    data = load_eval_set(root, config.cleansing_threshold)
    eval_seed = zoo_identity(root)[2] if config.zoo is None else None
    val_root, threshold_from = validation_zoo(config, eval_seed, progress)
    validation = None
    if val_root is not None:
        val_data = load_eval_set(val_root, config.cleansing_threshold)
        validation = QualityContext(config, val_data, encoder, label, progress)
    ctx = QualityContext(config, data, encoder, label, progress, validation=validation)
    trained = EncoderFeaturizer(f"triplet encoder [{label}]", encoder)
    untrained = EncoderFeaturizer("untrained encoder (same architecture)", untrained_encoder(encoder.config))
    gram_model = encoder if encoder.config.backbone == "stats" else None
    plan: list[tuple[str, Featurizer, Aggregation, bool]] = [
        ("NoFine-Tuning (untrained encoder)", untrained, "d_avg", True),
        ("Colour histogram", ColourHistogram(), "d_avg", True),
        (
            "Gram matrices",
            GramFeatures(
                untrained_encoder(gram_model.config if gram_model else untrained.embedder.model.config)
            ),
            "d_avg",
            True,
        ),
    ]
    if config.no_cleansing_encoder is not None:
        plain, plain_label = resolve_encoder(config.no_cleansing_encoder)
        plan.append(
            (
                "Triplet, no cleansing",
                EncoderFeaturizer(f"triplet encoder [{plain_label}]", plain),
                "d_avg",
                False,
            )
        )
    else:
        plan.append(("Triplet, no cleansing (references)", trained, "d_avg", False))
    plan += [
        ("Triplet d_avg", trained, "d_avg", True),
        ("Triplet d_rms", trained, "d_rms", True),
        ("Triplet centroid", trained, "centroid", True),
    ]
    rows = [
        evaluate_row(ctx, *entry)
        for entry in tqdm(plan, desc="bench quality", unit="row", disable=not progress)
    ]
    # The d_avg row of each zoo, for `zoo_row_hooks` (lab/bench/adapt_rows.py scores it adapted).
    d_avg_rows = [(ctx, next(row for row in rows if row.method == "Triplet d_avg"))]
    for extra in extra_rows:
        rows.extend(extra(ctx))
        d_avg_rows.extend(getattr(extra, "d_avg_targets", []))  # e.g. held_out_rows.py's zoo
    result: dict[str, Any] = {
        "benchmark": "quality",
        "zoo": _zoo_summary(data, config),
        "encoder": {
            "label": label,
            "fingerprint": fingerprint,
            "config": json.loads(encoder.config.to_json()),
            "metadata": _encoder_metadata(config.encoder),
        },
        "pairs": {
            "positive": config.n_positive,
            "negative": config.n_negative,
            "seed": config.pair_seed,
            "distance": "aggregation from image i to image j's LoRA without i",
            "threshold_from": threshold_from,
        },
        "intervals": {
            "method": "percentile bootstrap over styles (each style's queries together)",
            "level": 0.95,
            "resamples": config.bootstrap_resamples,
        },
        "seeds": [scored.as_dict() for scored in checked],
    }
    if config.real_zoo is not None:
        real = load_eval_set(config.real_zoo, config.cleansing_threshold)
        real_ctx = QualityContext(config, real, encoder, label, progress)  # held-out pairs
        rows += [
            evaluate_row(real_ctx, "real-art: triplet d_avg", trained, "d_avg", True),
            evaluate_row(real_ctx, "real-art: colour histogram", ColourHistogram(), "d_avg", True),
        ]
        d_avg_rows.append((real_ctx, rows[-2]))
        result["real_zoo"] = {
            **_zoo_summary(real, config),
            "threshold_from": f"held-out half of its pairs (pair seed {config.pair_seed})",
        }
    for hook in zoo_row_hooks:
        hook(rows, d_avg_rows)
    result |= {
        "rows": [row.as_dict() for row in rows],
        "paper": PAPER,
        "seconds": round(time.monotonic() - started, 1),
    }
    if config.record_seed:
        record_run(config.seed_ledger, checked, fingerprint, label)
    return result


def _zoo_summary(data: EvalSet, config: QualityConfig) -> dict[str, Any]:
    zoo = read_zoo_info(data.root)
    styles: dict[str, dict[str, Any]] = zoo["styles"]  # type: ignore[assignment]
    return {
        "root": str(data.root),
        "split": zoo["split"],
        "seed": zoo["seed"],
        "size": zoo["size"],
        "loras": len(data.slugs),
        "samples": len(data.sample_ids),
        "queries": len(data.queries),
        "lookalikes": sum(1 for s in styles.values() if s.get("lookalike_of") is not None),
        "references": len(data.references),
        "dropped_by_cleansing": int((~data.kept).sum()),
        "cleansing_threshold": config.cleansing_threshold,
    }


def _encoder_metadata(path: Path | None) -> dict[str, str]:
    from inference_service.models.style_encoder import DEFAULT_WEIGHTS

    target = path or (DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.exists() else None)
    if target is None:
        return {}
    meta = read_metadata(target)
    return {
        k: v
        for k, v in meta.items()
        if k in ("command", "seed", "steps", "cleansing", "train_zoo", "reproduce")
    }
