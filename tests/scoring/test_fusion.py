from __future__ import annotations

import pytest

from inference_service.scoring.fusion import fuse, normalise


def test_rank_normalisation_shares_ties() -> None:
    assert normalise({1: 0.3, 2: 0.1, 3: 0.3, 4: 0.9}, "rank") == {1: 0.625, 2: 0.25, 3: 0.625, 4: 1.0}


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


def test_a_lora_missing_one_branch_still_ranks() -> None:
    d = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    r = {1: 0.5, 2: 0.1, 5: 0.9}  # 3 and 4 have no spec, 5 has no references
    fused = fuse(d, r, 0.5, "rank")
    assert set(fused) == {1, 2, 3, 4, 5}
    assert fused[3] == pytest.approx(0.75)  # its d_avg rank alone
    assert fused[5] == pytest.approx(1.0)  # its RKME rank alone
    assert fuse(d, {}, 0.5, "rank") == normalise(d, "rank")


def test_alpha_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="alpha"):
        fuse({1: 1.0}, {1: 1.0}, 1.5)
