"""Multi-image query rows for `bench quality`: 1, 2 and 4 images of the same held-out style.

Each eval query's style also restyles 3 more unseen content images (the query pool, another
random stream), so a k-image query is the original query plus k-1 of these. The style distance
of a multi-image query is the mean of its images' d_avg, exactly as the service ranks them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference_service.scoring.style_distance import style_distances
from lab.bench.features import EncoderFeaturizer
from lab.bench.pairs import zoo_vectors
from lab.bench.quality_context import QualityContext, Row
from lab.metrics import ranking_metrics, ranks_of_truth
from lab.zoo.style_ops import apply_style
from lab.zoo.style_zoo import _contents, _stream, load_rgb, read_zoo_info, style_slug, zoo_styles

EXTRA_PER_QUERY = 3
_CONTENT_STREAM = 6  # 4 holds the single queries' content: these are other unseen images
_STYLE_STREAM = 7


def extra_query_images(ctx: QualityContext) -> list[list[Image.Image]]:
    """Per eval query, EXTRA_PER_QUERY more images in its style (cached next to the zoo)."""
    data = ctx.data
    folder = data.root / "queries-multi"
    wanted = [folder / f"q{q:03d}-{j}.png" for q in range(len(data.queries)) for j in range(EXTRA_PER_QUERY)]
    if not all(path.exists() for path in wanted):
        _write_extra(ctx, folder)
    return [
        [load_rgb(folder / f"q{q:03d}-{j}.png") for j in range(EXTRA_PER_QUERY)]
        for q in range(len(data.queries))
    ]


def _write_extra(ctx: QualityContext, folder: Path) -> None:
    data = ctx.data
    seed = int(str(read_zoo_info(data.root)["seed"]))  # the zoo's own seed, whatever the config says
    styles = zoo_styles(len(data.slugs), "eval", seed)
    by_slug = {style_slug("eval", i, spec): spec for i, spec in enumerate(styles)}
    missing = [q.slug for q in data.queries if q.slug not in by_slug]
    if missing:
        raise ValueError(f"{data.root} is not an eval-split style zoo: unknown styles {missing[:3]}")
    folder.mkdir(exist_ok=True)
    size = data.query_images[0].width
    contents = _contents(
        "eval-query", len(data.queries) * EXTRA_PER_QUERY, seed, "eval", _CONTENT_STREAM, size
    )
    for n, content in enumerate(contents):
        q, j = divmod(n, EXTRA_PER_QUERY)
        spec = by_slug[data.queries[q].slug]
        apply_style(spec, content.image, _stream(seed, "eval", _STYLE_STREAM, n)).save(
            folder / f"q{q:03d}-{j}.png"
        )


def multi_image_rows(ctx: QualityContext) -> list[Row]:
    """Triplet d_avg with 1, 2 and 4 query images, in the same run and on the same queries."""
    started = time.monotonic()
    data = ctx.data
    featurizer = EncoderFeaturizer(f"triplet encoder [{ctx.encoder_label}]", ctx.encoder)
    refs, _ = zoo_vectors(ctx, featurizer)  # the same vectors as the single-image rows of this run
    per_lora = [refs[(data.labels == m) & data.kept] for m in range(len(data.slugs))]
    extra = extra_query_images(ctx)
    images_per_query = [[data.query_images[q], *extra[q]] for q in range(len(data.queries))]
    # distances[i] : (Q, M) d_avg of every query's i-th image
    distances = [
        style_distances(featurizer([imgs[i] for imgs in images_per_query]), per_lora, "d_avg")
        for i in range(1 + EXTRA_PER_QUERY)
    ]
    rows = []
    for count in (1, 2, 4):
        mean: NDArray[np.float64] = np.mean(distances[:count], axis=0)
        ranks = ranks_of_truth(mean, data.truth)
        ranking = ranking_metrics(ranks, ctx.config.bootstrap_resamples, clusters=data.truth).as_dict()
        ranking["query_ranks"] = ranks.tolist()
        rows.append(
            Row(
                f"Triplet d_avg, {count}-image queries",
                featurizer.name,
                "d_avg",
                True,
                ranking,
                {},
                time.monotonic() - started,
            )
        )
    return rows
