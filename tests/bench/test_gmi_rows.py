"""The GMI bench rows on a very small prompt-conditioned zoo (shape and plumbing, not quality)."""

from __future__ import annotations

import numpy as np

from inference_service.bench.gmi_rows import ALPHAS, GAMMAS, clip_stand_in, compute_features, gmi_rows
from inference_service.eval.prompt_zoo import CATEGORIES, generate_prompt_zoo
from inference_service.models.style_encoder import StyleEmbedder, untrained_encoder


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
