"""The exact scan's float32 lower bound never exceeds the true mean distance, where rounding is
worst: centroids equal to a query image, a hair from it, and of every scale."""

from __future__ import annotations

import numpy as np
import pytest

from inference_service.search.centroid_hnsw import lower_slack
from inference_service.search.memory_view import gathers, rounded_lower_bounds


class Columns:
    """What rounded_lower_bounds reads of a CentroidView."""

    def __init__(self, centroids: np.ndarray, sqnorm: np.ndarray) -> None:
        self.centroids, self.sqnorm = centroids, sqnorm
        self.by_dim = np.ascontiguousarray(centroids.T)

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
    bound = lower_slack(rounded_lower_bounds(view, rows, queries))  # type: ignore[arg-type]
    exact = np.linalg.norm(wide[rows][:, None, :] - queries.astype(np.float64)[None], axis=2).mean(axis=1)
    assert np.all(bound <= exact)
    assert np.all(bound >= exact - 1e-3 * np.maximum(exact, 1.0) - 2e-3)  # and still a tight one


def test_the_by_dimension_copy_follows_every_append_and_old_views_keep_theirs() -> None:
    from db.summaries import SummaryArrays
    from inference_service.search.memory_index import _Columns

    rng = np.random.default_rng(3)

    def rows(n: int, first_id: int) -> SummaryArrays:
        return SummaryArrays(
            lora_ids=np.arange(first_id, first_id + n, dtype=np.int64),
            generation=np.zeros(n, np.int64),
            centroids=rng.standard_normal((n, 16)).astype(np.float32),
            mean_radius=np.ones(n, np.float32),
            mean_sq_radius=np.ones(n, np.float32),
            searchable=np.ones(n, bool),
            nsfw=np.zeros(n, bool),
            base_model=["SDXL 1.0"] * n,
        )

    columns = _Columns(rows(10, 0))  # capacity 1,034: the second append below outgrows it
    graph = None  # unused by the views' columns
    first = columns.view(1, np.ones(10, bool), graph, 0, None)  # type: ignore[arg-type]
    columns.append(rows(500, 10))
    columns.append(rows(2000, 510))
    last = columns.view(2, np.ones(2510, bool), graph, 0, None)  # type: ignore[arg-type]
    assert first.by_dim.shape == (16, 10)
    assert np.array_equal(first.by_dim, first.centroids.T)
    assert last.by_dim.shape == (16, 2510)
    assert np.array_equal(last.by_dim, last.centroids.T)
