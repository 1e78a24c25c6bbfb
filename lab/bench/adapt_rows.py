"""`bench quality --adapt-minutes M`: each d_avg zoo row again after adapting the encoder to that zoo.

For each zoo scored with d_avg (the procedural eval zoo, the real-art zoo, any other zoo row), the
encoder under test is fine-tuned by `adapt_encoder` (inference_service/training/adapt.py, what
`findlora catalog adapt` runs) on that zoo's catalog (its references, read with the catalog
directory loader; never its queries), and the same queries are scored with the adapted encoder.
The row "<original> (adapted)" sits beside the original with its own bootstrap interval, and
carries the paired MRR / hit@5 delta with a bootstrap interval over the same queries, the
adaptation's seconds and its validation MRR before / after. The adapted encoder is scored
whether or not adaptation would have kept it: `kept` says which the product would activate.
Its F1/AUC come from the pairs whose image i is a sample adaptation held out (the other pairs are
its training data), and `unadapted_on_held_out_pairs` scores the starting encoder on the same ones.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.scoring.style_distance import style_distances
from inference_service.training.adapt import AdaptConfig, AdaptError, adapt_encoder
from inference_service.training.references import load_reference_set
from lab.bench.features import EncoderFeaturizer
from lab.bench.pairs import verification_metrics
from lab.bench.quality import evaluate_row
from lab.bench.quality_context import QualityContext, Row, ZooRowsHook
from lab.metrics import paired_deltas, ranks_of_truth


def query_ranks(ctx: QualityContext, featurizer_name: str) -> NDArray[np.float64]:
    """Each query's rank by d_avg over the cleansed references, from the run's cached vectors."""
    data = ctx.data
    vectors = ctx.embeddings[featurizer_name]
    n = len(data.references)
    per_lora = [vectors[:n][(data.labels == m) & data.kept] for m in range(len(data.slugs))]
    return ranks_of_truth(style_distances(vectors[n:], per_lora, "d_avg"), data.truth)


def adapted_row(ctx: QualityContext, original: Row, adapt: AdaptConfig) -> Row:
    """`original` (a d_avg row of this context) scored again with the encoder adapted to its zoo."""
    started = time.monotonic()
    refs = load_reference_set(
        ctx.data.root,
        ctx.encoder.config.input_size,
        cleansing_threshold=ctx.config.cleansing_threshold,
        progress=ctx.progress,
    )
    work_dir = ctx.config.cache_dir / "adapt-work"
    outcome = adapt_encoder(refs, ctx.encoder, ctx.encoder_label, adapt, work_dir, progress=ctx.progress)
    outcome.discard_work_files()  # nothing activates it: the bench keeps only the model
    adapted = EncoderFeaturizer(f"adapted encoder [{ctx.data.root.name}]", outcome.model)
    # F1/AUC only from the samples adaptation held out: its pairs are its training data otherwise.
    held_out = np.isin(np.asarray(ctx.data.sample_ids)[ctx.data.contents], outcome.val_samples)
    row = evaluate_row(ctx, f"{original.method} (adapted)", adapted, "d_avg", True, pair_anchors=held_out)
    before, after = query_ranks(ctx, original.featurizer), query_ranks(ctx, adapted.name)
    same_pairs = verification_metrics(
        ctx, EncoderFeaturizer(original.featurizer, ctx.encoder), "d_avg", True, held_out
    )
    adaptation: dict[str, Any] = {
        k: v for k, v in outcome.as_dict().items() if k not in ("train_samples", "val_samples")
    }
    row.extra = {
        "adapted_from": original.method,
        **paired_deltas(before, after, ctx.config.bootstrap_resamples, clusters=ctx.data.truth),
        "adaptation": {
            **adaptation,
            "train_samples": len(outcome.train_samples),
            "val_samples": len(outcome.val_samples),
            "max_minutes": adapt.max_minutes,
        },
        "unadapted_on_held_out_pairs": {k: same_pairs[k] for k in ("f1", "auc") if k in same_pairs},
        "seconds_with_adaptation": round(time.monotonic() - started, 1),
    }
    return row


def adapted_rows_hook(adapt: AdaptConfig, progress: bool = True) -> ZooRowsHook:
    """For `run_quality(zoo_row_hooks=...)`: insert each zoo's adapted row right after its d_avg
    row; a zoo too small to adapt to is said so (on stderr) and gets no row."""

    def add(rows: list[Row], targets: list[tuple[QualityContext, Row]]) -> None:
        for ctx, original in targets:
            try:
                row = adapted_row(ctx, original, adapt)
            except AdaptError as exc:
                tqdm.write(f"{original.method}: no adapted row: {exc}")
                continue
            rows.insert(next(i for i, r in enumerate(rows) if r is original) + 1, row)
            if progress:
                tqdm.write(f"{row.method}: {row.extra['adaptation']['reason']}")

    return add
