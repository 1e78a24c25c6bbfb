from __future__ import annotations

import time

import numpy as np
import pytest

from inference_service.scoring.fusion import CatalogCounts, fuse, normalise, rank_fused


def test_rank_normalisation_is_mid_ranks_with_shared_ties() -> None:
    assert normalise({1: 0.3, 2: 0.1, 3: 0.3, 4: 0.9}, "rank") == {1: 0.5, 2: 0.125, 3: 0.5, 4: 0.875}
    assert normalise({7: 3.0}, "rank") == {7: 0.5}  # a branch of one says nothing either way


def test_rank_normalisation_of_a_whole_catalog_is_fast_and_exact() -> None:
    values = np.random.default_rng(0).integers(0, 500, 100_000).astype(float)
    started = time.perf_counter()
    got = normalise(dict(enumerate(values)), "rank")
    assert time.perf_counter() - started < 1.0  # the per-value loop took minutes here
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in (0.0, 250.0, 499.0):
        tied = values == value
        assert got[int(np.flatnonzero(tied)[0])] == pytest.approx((ranks[tied].mean() - 0.5) / len(values))


def test_robust_z_is_centred_on_the_median() -> None:
    got = normalise({1: 1.0, 2: 2.0, 3: 3.0, 4: 100.0}, "robust_z")
    assert got[1] < got[2] < got[3] < got[4]
    assert (got[2] + got[3]) / 2 == pytest.approx(0.0)


@pytest.mark.parametrize("method", ["rank", "robust_z"])
def test_alpha_moves_between_the_branches(method: str) -> None:
    d = {1: 0.1, 2: 0.2, 3: 0.3}
    r = {1: 0.9, 2: 0.5, 3: 0.1}
    by_d = fuse(d, r, 1.0, method)  # type: ignore[arg-type]
    by_r = fuse(d, r, 0.0, method)  # type: ignore[arg-type]
    assert sorted(by_d, key=by_d.__getitem__) == [1, 2, 3]
    assert sorted(by_r, key=by_r.__getitem__) == [3, 2, 1]


def test_a_lora_missing_one_branch_takes_its_neutral_value_there() -> None:
    d = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    r = {1: 0.5, 2: 0.1, 5: 0.9}  # 3 and 4 have no spec, 5 has no references
    fused = fuse(d, r, 0.5, "rank")
    assert set(fused) == {1, 2, 3, 4, 5}
    # Each branch scored 4 and 3 of the 5 candidates: its places are shrunk towards 0.5 by that.
    assert fused[3] == pytest.approx(0.5 * (0.5 + 0.8 * (0.625 - 0.5)) + 0.5 * 0.5)
    assert fused[5] == pytest.approx(0.5 * 0.5 + 0.5 * (0.5 + 0.6 * (5 / 6 - 0.5)))
    assert fuse(d, {}, 0.5, "rank") == normalise(d, "rank")


@pytest.mark.parametrize("method", ["rank", "robust_z"])
def test_the_only_spec_holder_with_the_best_d_avg_ranks_first(method: str) -> None:
    """A catalog whose specs are partly imported: the branch of one spec holder must not push it
    down (it ranked 50th of 100 with rank normalisation, 25th with robust z-scores)."""
    d = {i: 0.1 + 0.01 * i for i in range(1, 101)}
    assert rank_fused(d, {1: 0.3}, 0.5, method)[0][0] == 1  # type: ignore[arg-type]
    # Two spec holders: the one with the worse RKME of the two keeps its place near the top.
    assert {i for i, _ in rank_fused(d, {1: 0.3, 2: 0.2}, 0.5, method)[:2]} == {1, 2}  # type: ignore[arg-type]


def test_a_branch_that_scored_every_candidate_is_not_shrunk() -> None:
    d = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    r = {1: 0.4, 2: 0.1, 3: 0.3, 4: 0.2}
    fused = fuse(d, r, 0.5, "rank")
    nd, nr = normalise(d, "rank"), normalise(r, "rank")
    assert fused == {k: pytest.approx(0.5 * nd[k] + 0.5 * nr[k]) for k in d}


def test_alpha_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="alpha"):
        fuse({1: 1.0}, {1: 1.0}, 1.5)


def _union_recall(spec_share: float, with_counts: bool, queries: int = 10) -> float:
    """Recall@10 of the exhaustive fused top-10 in the top-10 of the union of each branch's best
    100 of 2,000 LoRAs (the fused search's candidates), both branches following one latent
    style distance with their own noise."""
    recalls = []
    for seed in range(queries):
        rng = np.random.default_rng(seed)
        latent = rng.normal(size=2_000)
        d = {i: float(x) for i, x in enumerate(latent + rng.normal(size=2_000))}
        has_spec = np.flatnonzero(rng.random(2_000) < spec_share)
        r = {int(i): float(latent[i] + rng.normal()) for i in has_spec}
        exhaustive = {i for i, _ in rank_fused(d, r, 0.5, "rank", 10)}
        union = set(sorted(d, key=d.__getitem__)[:100]) | set(sorted(r, key=r.__getitem__)[:100])
        counts = CatalogCounts(len(d), len(r), len(d)) if with_counts else None
        fused = rank_fused(
            {i: d[i] for i in union}, {i: r[i] for i in union if i in r}, 0.5, "rank", 10, counts
        )
        recalls.append(len(exhaustive & {i for i, _ in fused}) / 10)
    return float(np.mean(recalls))


@pytest.mark.parametrize("spec_share", [0.1, 0.3, 1.0])
def test_the_union_fused_on_the_catalogs_counts_keeps_the_exhaustive_head(spec_share: float) -> None:
    """Where a tenth or a third of the catalog has a spec, the union's own counts let RKME pull
    twice as hard as in the exhaustive ranking (recall 0.5-0.7); the catalog's give it back."""
    assert _union_recall(spec_share, with_counts=True) >= 0.9
    if spec_share < 1.0:
        assert _union_recall(spec_share, with_counts=False) < 0.8


def test_counts_a_moment_old_never_count_fewer_than_the_candidates() -> None:
    d = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    r = {1: 0.4, 2: 0.1, 3: 0.3, 4: 0.2}
    assert fuse(d, r, 0.5, "rank", CatalogCounts(0, 0, 0)) == fuse(d, r, 0.5, "rank")
    # robust z-scores need the catalog's median and spread: they stay over the candidates
    assert fuse(d, r, 0.5, "robust_z", CatalogCounts(100, 10, 100)) == fuse(d, r, 0.5, "robust_z")
