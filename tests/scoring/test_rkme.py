"""Weighted RKME against a literal computation of the formula, and the paper's appendix example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference_service.catalog.platform_prompts import PLATFORM_PROMPTS
from inference_service.scoring.rkme import (
    Spec,
    kernel_mean_distance,
    prompt_weights,
    rbf,
    reduced_set,
    rkme_clip,
    unit,
    weighted_rkme,
)


def literal_score(z: np.ndarray, e: np.ndarray, zq: np.ndarray, eq: np.ndarray, gamma: float) -> float:
    """docs/design.md 5 written out with loops: w_i = max(cos(e_i, ê), 0) / sum, RBF kernel."""

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return math.exp(-gamma * float(np.sum((x - y) ** 2)))

    cos = [float(ei @ eq / (np.linalg.norm(ei) * np.linalg.norm(eq))) for ei in e]
    w = [max(c, 0.0) for c in cos]
    total = sum(w)
    w = [x / total for x in w] if total > 0 else [1.0 / len(z)] * len(z)
    first = sum(w[i] * w[j] * k(z[i], z[j]) for i in range(len(z)) for j in range(len(z)))
    second = sum(w[i] * k(z[i], zq) for i in range(len(z)))
    return first - 2.0 * second + k(zq, zq)


@pytest.mark.parametrize("gamma", [0.1, 1.0, 4.0])
def test_weighted_rkme_matches_the_formula(gamma: float) -> None:
    rng = np.random.default_rng(1)
    z = unit(rng.normal(size=(12, 8)))
    e = rng.normal(size=(12, 5))
    zq = unit(rng.normal(size=8))[0]
    eq = rng.normal(size=5)
    got = weighted_rkme(Spec(z, e), zq, eq, gamma)
    assert got == pytest.approx(literal_score(z, e, zq, eq, gamma), rel=1e-10, abs=1e-12)
    assert got >= -1e-12  # a squared RKHS distance


def test_weights_are_uniform_without_a_prompt_or_any_positive_cosine() -> None:
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(prompt_weights(e, None), [1 / 3] * 3)
    np.testing.assert_allclose(prompt_weights(e, np.array([-1.0, -1.0])), [1 / 3] * 3)
    w = prompt_weights(e, np.array([1.0, 0.0]))
    np.testing.assert_allclose(w, np.array([1.0, 0.0, math.sqrt(0.5)]) / (1 + math.sqrt(0.5)))


def test_uniform_weights_give_rkme_clip() -> None:
    rng = np.random.default_rng(2)
    z = unit(rng.normal(size=(9, 6)))
    q = unit(rng.normal(size=(2, 6)))
    spec = Spec(z, np.ones((9, 3)))  # every prompt identical: weights are uniform
    assert weighted_rkme(spec, q, np.ones(3), 1.0) == pytest.approx(rkme_clip(spec, q, 1.0))


def test_several_query_images_are_one_uniform_distribution() -> None:
    rng = np.random.default_rng(3)
    z, q = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    w = np.full(5, 0.2)
    expected = float(w @ rbf(z, z, 0.5) @ w - 2 * (w @ rbf(z, q, 0.5)).mean() + rbf(q, q, 0.5).mean())
    assert kernel_mean_distance(z, w, q, 0.5) == pytest.approx(expected)


def test_weighting_separates_the_appendix_models() -> None:
    """Appendix B.1: two models with the same image distribution under the platform prompt set,
    but m1 draws cluster A for prompt "cat" and B for "street" while m2 does the opposite.
    RKME-CLIP cannot tell them apart; weighted RKME ranks the one that serves the user's prompt."""
    rng = np.random.default_rng(0)
    dim = 16
    centre_a, centre_b = unit(rng.normal(size=dim))[0], unit(rng.normal(size=dim))[0]
    cluster_a = unit(centre_a + 0.15 * rng.normal(size=(10, dim)))
    cluster_b = unit(centre_b + 0.15 * rng.normal(size=(10, dim)))
    e_cat, e_street = np.eye(4)[0], np.eye(4)[1]
    images = np.vstack([cluster_a, cluster_b])
    m1 = Spec(images, np.vstack([np.tile(e_cat, (10, 1)), np.tile(e_street, (10, 1))]))
    m2 = Spec(images, np.vstack([np.tile(e_street, (10, 1)), np.tile(e_cat, (10, 1))]))

    query = unit(centre_a + 0.15 * rng.normal(size=dim))  # looks like cluster A ...
    cat_prompt = unit(e_cat + 0.2 * e_street + 0.1 * np.eye(4)[2])[0]  # ... described as a cat
    gamma = 2.0
    assert rkme_clip(m1, query, gamma) == pytest.approx(rkme_clip(m2, query, gamma))
    assert weighted_rkme(m1, query, cat_prompt, gamma) < weighted_rkme(m2, query, cat_prompt, gamma)
    # The same image described as a street is what m2 makes for "street".
    street_prompt = unit(e_street + 0.2 * e_cat)[0]
    assert weighted_rkme(m2, query, street_prompt, gamma) < weighted_rkme(m1, query, street_prompt, gamma)


def rkhs_gap(
    reduced_centres: np.ndarray, beta: np.ndarray, z: np.ndarray, w: np.ndarray, gamma: float
) -> float:
    """‖Σ β_j φ(c_j) − Σ w_i φ(z_i)‖²."""
    return float(
        beta @ rbf(reduced_centres, reduced_centres, gamma) @ beta
        - 2 * beta @ rbf(reduced_centres, z, gamma) @ w
        + w @ rbf(z, z, gamma) @ w
    )


def test_reduced_set_with_every_point_is_exact() -> None:
    rng = np.random.default_rng(4)
    z = unit(rng.normal(size=(7, 5)))
    q = unit(rng.normal(size=5))
    reduced = reduced_set(z, None, size=7, gamma=1.0)
    assert reduced.score(q, 1.0) == pytest.approx(rkme_clip(Spec(z, np.ones((7, 1))), q, 1.0), abs=1e-5)


def test_reduced_set_beta_beats_uniform_coefficients_on_its_centres() -> None:
    rng = np.random.default_rng(5)
    z = unit(np.vstack([rng.normal(size=(20, 6)), 3 + rng.normal(size=(5, 6))]))
    w = np.full(len(z), 1 / len(z))
    reduced = reduced_set(z, w, size=3, gamma=1.0)
    assert np.all(reduced.beta >= 0)
    uniform = np.full(3, 1 / 3)
    assert rkhs_gap(reduced.centres, reduced.beta, z, w, 1.0) < rkhs_gap(reduced.centres, uniform, z, w, 1.0)


def test_default_platform_prompt_set() -> None:
    assert len(PLATFORM_PROMPTS) == 55
    assert len(set(PLATFORM_PROMPTS)) == 55


def test_each_prompt_weighs_the_same_however_many_images_it_drew() -> None:
    """An imported spec may hold 4 images of one prompt and 1 of another: with the query text as
    close to both, each prompt carries half the mass, shared among its images."""
    from db.rows import LoraSpec
    from inference_service.gmi import score_specs

    rng = np.random.default_rng(4)
    e_a, e_b = np.eye(2)
    z = unit(rng.normal(size=(5, 6)))
    e = np.vstack([np.tile(e_a, (4, 1)), e_b])
    spec = Spec(z, e, prompt_ids=(0, 0, 0, 0, 1))
    query_text = np.array([1.0, 1.0])
    np.testing.assert_allclose(spec.point_weights(query_text), [0.125] * 4 + [0.5])
    assert Spec(z, e).point_weights(query_text) == pytest.approx([0.2] * 5)  # one image per prompt

    query = unit(rng.normal(size=(1, 6)))
    expected = kernel_mean_distance(z, np.array([0.125] * 4 + [0.5]), query, 1.0)
    stored = LoraSpec(7, z.astype(np.float32), e.astype(np.float32), [0, 0, 0, 0, 1])
    assert score_specs({7: stored}, query, query_text, 1.0) == {7: pytest.approx(expected, rel=1e-5)}
