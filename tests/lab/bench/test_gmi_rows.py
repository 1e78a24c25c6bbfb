"""The GMI bench rows on a very small prompt-conditioned zoo (shape and plumbing, not quality)."""

from __future__ import annotations

import numpy as np

from inference_service.models.style_encoder import StyleEmbedder, untrained_encoder
from lab.bench.gmi_rows import (
    ALPHAS,
    GAMMAS,
    UNION_CANDIDATES,
    clip_stand_in,
    compute_features,
    gmi_rows,
    nearest_spec_distance,
    rkme_matrix,
    union_search,
)
from lab.zoo.prompt_zoo import CATEGORIES, generate_prompt_zoo


class ByCategory:
    """A text encoder stand-in: one-hot on the category whose prompt or caption it is."""

    label = "one-hot"

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        index = {c.prompt: i for i, c in enumerate(CATEGORIES)} | {
            c.oracle_caption: i for i, c in enumerate(CATEGORIES)
        }
        return np.eye(len(CATEGORIES), dtype=np.float32)[[index[t] for t in texts]]


def test_prompt_zoo_and_rows() -> None:
    zoo = generate_prompt_zoo(n_styles=6, n_samples=3, n_per_prompt=1, n_queries=4, size=48, progress=False)
    assert len(zoo.spec_images[0]) == len(CATEGORIES)
    assert {split: len(q) for split, q in zoo.queries.items()} == {"validation": 4, "test": 4}
    assert len({lora for _, lora, _ in zoo.queries["test"]}) == 4  # distinct LoRAs
    features = compute_features(zoo, StyleEmbedder(untrained_encoder(), "untrained"), ByCategory(), False)
    z = clip_stand_in(zoo.spec_images[0])
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0)
    rows, chosen = gmi_rows(features, "untrained")
    assert [r["method"] for r in rows] == [
        "Triplet d_avg (same zoo)",
        "RKME-CLIP",
        "Reduced-set RKME (k=4, NNLS)",
        "Weighted RKME",
        "Fused (d_avg + weighted RKME)",
    ]
    assert chosen["weighted_gamma"] in GAMMAS
    assert chosen["alpha"] in ALPHAS
    for row in rows:
        assert 0 < row["ranking"]["mrr"] <= 1
        assert row["ranking"]["n_queries"] == 4
    # Six LoRAs: every per-branch cut of the bench covers the catalog, so the union search is
    # the exhaustive fused ranking.
    union = rows[-1]["union_search"]
    assert union["candidates_per_branch"] == UNION_CANDIDATES[0]
    assert (union["recall_at_10"], union["median_candidates_scored"]) == (1.0, 6)
    assert union["mrr"] == round(rows[-1]["ranking"]["mrr"], 4)
    # One candidate per branch: at most 2 of the 6 LoRAs scored, at most 2 of the top 6 found.
    test = features.truth["test"]
    rkme = rkme_matrix(features, "test", chosen["weighted_gamma"], "weighted")
    nearest = nearest_spec_distance(features.spec, features.query_images["test"])
    assert nearest.shape == rkme.shape == (4, 6)
    for i, spec in enumerate(features.spec):  # a spec image as the query: its own LoRA is at 0
        assert nearest_spec_distance(features.spec, spec.image_features[:1])[0, i] < 1e-9
    cut = union_search(
        features.d_avg["test"], rkme, nearest, test, chosen["alpha"], chosen["normalisation"], 1
    )
    assert cut["median_candidates_scored"] <= 2
    assert cut["recall_at_10"] <= 2 / 6
