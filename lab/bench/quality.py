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
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.catalog.format import Catalog, read_catalog
from inference_service.models.style_encoder import (
    encoder_fingerprint,
    read_metadata,
    resolve_encoder,
    untrained_encoder,
)
from inference_service.scoring.cleansing import transfer_mse
from inference_service.scoring.style_distance import Aggregation, style_distances
from lab.bench.features import ColourHistogram, EncoderFeaturizer, Featurizer, GramFeatures
from lab.bench.pairs import verification_metrics, zoo_vectors
from lab.bench.quality_context import (
    ZOO_FORMAT,
    EvalSet,
    QualityConfig,
    QualityContext,
    Row,
    ZooRowsHook,
)
from lab.bench.seed_ledger import ZooKind, check_run, read_ledger, record_run
from lab.metrics import (
    ranking_metrics,
    ranks_of_truth,
)
from lab.zoo.style_zoo import generate_zoo, load_rgb, read_queries, read_zoo_info

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
    ref_vectors, query_vectors = zoo_vectors(ctx, featurizer)
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
