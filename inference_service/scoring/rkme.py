"""Weighted RKME (generative model identification) and its baselines, pure numpy.

The score, its weights and the baselines (RKME-CLIP, reduced-set RKME): docs/design.md 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _as_2d(x: NDArray[np.floating]) -> Array:
    a = np.asarray(x, dtype=np.float64)
    return a[None, :] if a.ndim == 1 else a


def rbf(x: NDArray[np.floating], y: NDArray[np.floating], gamma: float) -> Array:
    """k(x_a, y_b) = exp(-γ‖x_a − y_b‖²) for every pair: (A, D) x (B, D) -> (A, B)."""
    a, b = _as_2d(x), _as_2d(y)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    out: Array = np.exp(-gamma * np.maximum(sq, 0.0))
    return out


def unit(x: NDArray[np.floating]) -> Array:
    a = _as_2d(x)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    out: Array = a / np.where(norm > 0, norm, 1.0)
    return out


def prompt_weights(prompt_features: NDArray[np.floating], query_text: NDArray[np.floating] | None) -> Array:
    """w_i = max(cos(e_i, ê), 0), normalised to sum 1; uniform if all are 0 or there is no ê."""
    n = len(prompt_features)
    if n == 0:
        return np.zeros(0)
    if query_text is None:
        return np.full(n, 1.0 / n)
    cos = unit(prompt_features) @ unit(query_text)[0]
    w = np.maximum(cos, 0.0)
    total = w.sum()
    return w / total if total > 0 else np.full(n, 1.0 / n)


def kernel_mean_distance(
    points: NDArray[np.floating], weights: NDArray[np.floating], queries: NDArray[np.floating], gamma: float
) -> float:
    """‖Σ_i w_i φ(z_i) − mean_q φ(ẑ_q)‖² in the RBF RKHS (the score of the module docstring)."""
    z, q = _as_2d(points), _as_2d(queries)
    w = np.asarray(weights, dtype=np.float64)
    spec_term = float(w @ rbf(z, z, gamma) @ w)
    cross = float(w @ rbf(z, q, gamma).mean(axis=1))
    query_term = float(rbf(q, q, gamma).mean())
    return spec_term - 2.0 * cross + query_term


@dataclass(frozen=True)
class Spec:
    """One LoRA's specification: image features (N, D) and, per point, its prompt's text feature."""

    image_features: Array
    prompt_features: Array  # (N, T): row i is e_i of the prompt that generated z_i
    # Per point, the id of its prompt; None: one image per prompt, as in the paper.
    prompt_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.image_features) != len(self.prompt_features):
            raise ValueError("one prompt feature per spec image")
        if self.prompt_ids is not None and len(self.prompt_ids) != len(self.image_features):
            raise ValueError("one prompt id per spec image")

    def point_weights(self, query_text: NDArray[np.floating] | None) -> Array:
        """The paper's w_i per prompt, shared among that prompt's images: a prompt drawn four
        times (an imported spec with uneven counts) weighs as much as one drawn once."""
        w = prompt_weights(self.prompt_features, query_text)
        if self.prompt_ids is None or len(w) == 0:
            return w
        _, inverse, counts = np.unique(np.asarray(self.prompt_ids), return_inverse=True, return_counts=True)
        shared = w / counts[inverse]
        total = shared.sum()
        return shared / total if total > 0 else w


def weighted_rkme(
    spec: Spec, query_images: NDArray[np.floating], query_text: NDArray[np.floating] | None, gamma: float
) -> float:
    """The paper's Eq. 1 score (lower is better)."""
    w = spec.point_weights(query_text)
    return kernel_mean_distance(spec.image_features, w, query_images, gamma)


def rkme_clip(spec: Spec, query_images: NDArray[np.floating], gamma: float) -> float:
    """RKME-CLIP baseline: the same distance with uniform weights (prompts ignored)."""
    n = len(spec.image_features)
    return kernel_mean_distance(spec.image_features, np.full(n, 1.0 / n), query_images, gamma)


@dataclass(frozen=True)
class ReducedSet:
    """Reduced-set RKME: Σ_j β_j φ(c_j) approximating the spec's kernel mean."""

    centres: Array
    beta: Array

    def score(self, query_images: NDArray[np.floating], gamma: float) -> float:
        return kernel_mean_distance(self.centres, self.beta, query_images, gamma)


def _kmeans(x: Array, k: int, rng: np.random.Generator, iterations: int = 50) -> Array:
    """Plain Lloyd's k-means with k-means++ seeding (small sets: no library needed)."""
    centres = [x[int(rng.integers(len(x)))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        index = int(rng.choice(len(x), p=d2 / total)) if total > 0 else int(rng.integers(len(x)))
        centres.append(x[index])
    c = np.array(centres)
    for _ in range(iterations):
        labels = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        moved = np.array([x[labels == j].mean(0) if np.any(labels == j) else c[j] for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    return c


def reduced_set(
    points: NDArray[np.floating], weights: NDArray[np.floating] | None, size: int, gamma: float, seed: int = 0
) -> ReducedSet:
    """Centres by k-means, then β ≥ 0 minimising ‖Σ_j β_j φ(c_j) − Σ_i w_i φ(z_i)‖²_H.

    Expanding the RKHS norm gives the quadratic βᵀK_cc β − 2βᵀK_cz w, i.e. least squares
    ‖Lᵀβ − L⁻¹K_cz w‖² with K_cc = LLᵀ, solved under β ≥ 0 by NNLS.
    """
    from scipy.optimize import nnls  # type: ignore[import-untyped]

    z = _as_2d(points)
    w = np.full(len(z), 1.0 / len(z)) if weights is None else np.asarray(weights, dtype=np.float64)
    k = max(1, min(size, len(z)))
    centres = _kmeans(z, k, np.random.default_rng(seed))
    kcc = rbf(centres, centres, gamma) + 1e-8 * np.eye(k)
    b = rbf(centres, z, gamma) @ w
    chol = np.linalg.cholesky(kcc)
    beta, _ = nnls(chol.T, np.linalg.solve(chol, b))
    return ReducedSet(centres, np.asarray(beta, dtype=np.float64))
