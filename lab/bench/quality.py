"""`findlora bench quality`: the style-distance quality protocol (docs/design.md 8) in one run.

Each row is a featuriser + an aggregation over a LoRA's reference embeddings; more rows
(RKME-CLIP, weighted RKME, fusion) plug in through `EXTRA_ROWS`.
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
    read_metadata,
    resolve_encoder,
    untrained_encoder,
)
from inference_service.scoring.cleansing import DEFAULT_THRESHOLD, transfer_mse
from inference_service.scoring.style_distance import Aggregation, style_distances
from lab.bench.features import ColourHistogram, EncoderFeaturizer, Featurizer, GramFeatures
from lab.charts import png_chart
from lab.metrics import (
    best_f1,
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


@dataclass(frozen=True)
class QualityConfig:
    zoo: Path | None = None  # an existing eval zoo; None: generate (and cache) one
    cache_dir: Path = Path(".bench")
    n_styles: int = 100
    n_samples: int = 30
    n_queries: int = 40
    zoo_seed: int = 0
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
    ranking: dict[str, float | int]
    verification: dict[str, float | int]
    seconds: float

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


# Extension point: callables that add rows (e.g. RKME-CLIP, weighted RKME, fused) to a run.
EXTRA_ROWS: list[Callable[[QualityContext], list[Row]]] = []


def ensure_zoo(config: QualityConfig, progress: bool) -> Path:
    if config.zoo is not None:
        return config.zoo
    root = config.cache_dir / (
        f"zoo-eval-{config.n_styles}x{config.n_samples}-q{config.n_queries}-s{config.zoo_seed}-{config.image_size}px"
    )
    if not (root / "zoo.json").exists():
        generate_zoo(
            root,
            n_styles=config.n_styles,
            n_samples=config.n_samples,
            split="eval",
            seed=config.zoo_seed,
            progress=progress,
            size=config.image_size,
            n_queries=config.n_queries,
        )
    return root


def load_eval_set(root: Path, threshold: float) -> EvalSet:
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
    ctx: QualityContext, method: str, featurizer: Featurizer, aggregation: Aggregation, cleansed: bool
) -> Row:
    started = time.monotonic()
    ref_vectors, query_vectors = _embed(ctx, featurizer)
    data = ctx.data
    use = data.kept if cleansed else np.ones_like(data.kept)
    per_lora = [ref_vectors[(data.labels == m) & use] for m in range(len(data.slugs))]
    distances = style_distances(query_vectors, per_lora, aggregation)
    ranking = ranking_metrics(ranks_of_truth(distances, data.truth)).as_dict()
    pairs_from = np.flatnonzero(use)
    # A zoo whose sources share few samples (the real-art zoo) has fewer pairs than asked: use all.
    n_positive, n_negative = pair_capacity(data.labels[pairs_from], data.contents[pairs_from])
    positive, negative = sample_pairs(
        data.labels[pairs_from],
        data.contents[pairs_from],
        min(ctx.config.n_positive, n_positive),
        min(ctx.config.n_negative, n_negative),
        np.random.default_rng(ctx.config.pair_seed),
    )
    vectors = ref_vectors[pairs_from]

    def pair_distances(pairs: NDArray[np.int64]) -> NDArray[np.float64]:
        diff = vectors[pairs[:, 0]].astype(np.float64) - vectors[pairs[:, 1]]
        return np.asarray(np.sqrt((diff * diff).sum(axis=1)), dtype=np.float64)

    verification: dict[str, float | int] = {}  # none without both kinds of pair: F1 shows "-"
    if len(positive) and len(negative):
        verification = best_f1(pair_distances(positive), pair_distances(negative)).as_dict()
    return Row(
        method, featurizer.name, aggregation, cleansed, ranking, verification, time.monotonic() - started
    )


def run_quality(
    config: QualityConfig,
    progress: bool = True,
    extra_rows: Sequence[Callable[[QualityContext], list[Row]]] = (),
) -> dict[str, Any]:
    started = time.monotonic()
    root = ensure_zoo(config, progress)
    data = load_eval_set(root, config.cleansing_threshold)
    encoder, label = resolve_encoder(config.encoder)
    ctx = QualityContext(config, data, encoder, label, progress)
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
    for extra in [*EXTRA_ROWS, *extra_rows]:
        rows.extend(extra(ctx))
    zoo = read_zoo_info(root)
    styles: dict[str, dict[str, Any]] = zoo["styles"]  # type: ignore[assignment]
    return {
        "benchmark": "quality",
        "zoo": {
            "root": str(root),
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
        },
        "encoder": {
            "label": label,
            "config": json.loads(encoder.config.to_json()),
            "metadata": _encoder_metadata(config.encoder),
        },
        "pairs": {"positive": config.n_positive, "negative": config.n_negative, "seed": config.pair_seed},
        "rows": [row.as_dict() for row in rows],
        "paper": PAPER,
        "seconds": round(time.monotonic() - started, 1),
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


def render_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    zoo = result["zoo"]
    table = Table(
        title=f"bench quality: {zoo['loras']} unseen LoRAs x {zoo['samples']} refs, "
        f"{zoo['queries']} queries, {result['pairs']['positive']}/{result['pairs']['negative']} pairs"
    )
    for column in (
        "method",
        "MRR",
        "hit@1",
        "hit@5",
        "hit@10",
        "top-2",
        "top-3",
        "top-4",
        "avg rank",
        "F1",
        "AUC",
    ):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in result["rows"]:
        r, v = row["ranking"], row["verification"]
        table.add_row(
            row["method"],
            f"{r['mrr']:.3f}",
            f"{r['hit1']:.2f}",
            f"{r['hit5']:.2f}",
            f"{r['hit10']:.2f}",
            f"{r['top2']:.2f}",
            f"{r['top3']:.2f}",
            f"{r['top4']:.2f}",
            f"{r['avg_rank']:.2f}",
            f"{v['f1']:.1f}" if "f1" in v else "-",  # rows without the pair protocol
            f"{v['auc']:.3f}" if "auc" in v else "-",
        )
    return table


def save_chart(result: dict[str, Any], path: Path) -> None:
    rows = result["rows"]
    names = [row["method"] for row in rows]
    series = {
        "MRR": [row["ranking"]["mrr"] for row in rows],
        "hit@10": [row["ranking"]["hit10"] for row in rows],
        "F1 / 100": [row["verification"].get("f1", 0.0) / 100 for row in rows],
    }
    x = np.arange(len(rows))
    width = 0.27
    with png_chart(path, (max(8, 1.3 * len(rows)), 4.8), dpi=110) as (_, ax):
        for offset, (label, values) in enumerate(series.items()):
            ax.bar(x + (offset - 1) * width, values, width, label=label)
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(
            f"style zoo quality ({result['zoo']['loras']} unseen LoRAs, {result['zoo']['queries']} queries)"
        )
        ax.legend()
