"""The exact scan's float32 lower bound never exceeds the true mean distance, where rounding is
worst: centroids equal to a query image, a hair from it, and of every scale."""

from __future__ import annotations

import numpy as np
import pytest

from inference_service.search.memory_view import gathers, lower_bounds


class Columns:
    """What lower_bounds reads of a CentroidView."""

    def __init__(self, centroids: np.ndarray, sqnorm: np.ndarray) -> None:
        self.centroids, self.sqnorm = centroids, sqnorm

    def __len__(self) -> int:
        return len(self.centroids)


@pytest.mark.parametrize("images", [1, 2, 4])
@pytest.mark.parametrize("gather", [True, False], ids=["few-rows", "most-rows"])
def test_lower_bound_holds_under_rounding(images: int, gather: bool) -> None:
    rng = np.random.default_rng(images)
    queries = rng.standard_normal((images, 128)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    near = queries[rng.integers(0, images, 600)] + rng.standard_normal((600, 128)).astype(np.float32) * 1e-4
    scale = rng.uniform(0.01, 30, (600, 1)).astype(np.float32)
    scaled = rng.standard_normal((600, 128)).astype(np.float32) * scale
    centroids = np.concatenate([queries, near.astype(np.float32), scaled])
    wide = centroids.astype(np.float64)
    view = Columns(centroids, np.einsum("ij,ij->i", wide, wide).astype(np.float32))
    # A few rows are copied out before the product; of most, the product's rows are picked.
    rows = np.sort(rng.choice(len(centroids), len(centroids) // (8 if gather else 2), replace=False))
    assert gathers(len(rows), len(view), images) is gather
    bound = lower_bounds(view, rows, queries)  # type: ignore[arg-type]
    exact = np.linalg.norm(wide[rows][:, None, :] - queries.astype(np.float64)[None], axis=2).mean(axis=1)
    assert np.all(bound <= exact)
    assert np.all(bound >= exact - 1e-3 * np.maximum(exact, 1.0) - 2e-3)  # and still a tight one
