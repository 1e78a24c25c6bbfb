"""A check shared by the style-family tests: each family restyles a picture in its own look."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lab.zoo.style_ops import Array, Operation, Params


def assert_families_have_their_own_looks(
    names: Sequence[str],
    operations: Mapping[str, Operation],
    sample_params: Callable[[str, np.random.Generator], Params],
    x: Array,
) -> None:
    """Every family keeps the shape, dtype and range, changes `x`, and differs from every other."""
    looks = {}
    for name in names:
        rng = np.random.default_rng(1)
        styled = operations[name](x, sample_params(name, rng), rng)
        assert styled.shape == x.shape
        assert styled.dtype == np.float32
        assert float(styled.min()) >= 0.0
        assert float(styled.max()) <= 1.0
        assert float(np.abs(styled - x).mean()) > 0.02, name
        looks[name] = styled
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert float(np.abs(looks[a] - looks[b]).mean()) > 0.02, (a, b)
